//! The public API's contract with its users, beyond behaviour (the Rust API
//! Guidelines): the common traits of every public type, and error chains
//! that read well.

mod errors;
mod traits;
