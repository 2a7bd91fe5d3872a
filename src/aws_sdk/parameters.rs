//! Reading an AWS call's parameters (the members of
//! [`crate::aws_parameters`]) from its request's and response's JSON bodies,
//! on the application's thread: the members wanted are kept, everything else
//! is skipped without being kept (a `Query`'s items, a message's body).

use std::fmt;

use serde::de::{DeserializeSeed, Deserializer, IgnoredAny, MapAccess, SeqAccess, Visitor};
use serde_json::Value;

use crate::aws_parameters::{Param, Take};

/// The largest body read for parameters. Reading skips what it does not
/// keep, and the SDK reads the whole body itself anyway; a larger one (a
/// batch of large items) gives none.
const MAX_PARAMETER_BODY: usize = 4 * 1024 * 1024;

/// The most bytes one call's parameters take, as JSON: a parameter that
/// would take them past it is left out (a queue's `Policy` among its
/// attributes, a long list of failures).
pub(super) const MAX_PARAMETERS_BYTES: usize = 4096;

/// Parameters read: their names in the `aws` block, their values.
pub(super) type Picked = Vec<(&'static str, Value)>;

/// Adds to `out` the members of `params` found at the top of the JSON
/// object `body`. A body that is no JSON object, or breaks off, gives what
/// was read before.
pub(super) fn pick(body: &[u8], params: &'static [Param], out: &mut Picked) {
    if params.is_empty() || body.len() > MAX_PARAMETER_BODY {
        return;
    }
    let mut de = serde_json::Deserializer::from_slice(body);
    let _ = Pick { params, out }.deserialize(&mut de);
}

/// The parameters as one JSON object, at most [`MAX_PARAMETERS_BYTES`];
/// `None` when there are none.
pub(super) fn to_text(picked: &[(&'static str, Value)]) -> Option<String> {
    let mut text = String::from("{");
    for (key, value) in picked {
        let Ok(value) = serde_json::to_string(value) else {
            continue;
        };
        // `"key":value,` and the closing brace.
        if text.len() + key.len() + value.len() + 5 > MAX_PARAMETERS_BYTES {
            continue;
        }
        if text.len() > 1 {
            text.push(',');
        }
        text.push('"');
        text.push_str(key);
        text.push_str("\":");
        text.push_str(&value);
    }
    text.push('}');
    (text.len() > 2).then_some(text)
}

struct Pick<'o> {
    params: &'static [Param],
    out: &'o mut Picked,
}

impl<'de> DeserializeSeed<'de> for Pick<'_> {
    type Value = ();

    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<(), D::Error> {
        d.deserialize_map(self)
    }
}

impl<'de> Visitor<'de> for Pick<'_> {
    type Value = ();

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a JSON object")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<(), A::Error> {
        let mut seen = 0;
        while let Some(param) = map.next_key_seed(Member(self.params))? {
            let Some(param) = param else {
                map.next_value::<IgnoredAny>()?;
                continue;
            };
            seen += 1;
            let value = match param.take {
                Take::Value => Some(map.next_value::<Value>()?),
                Take::Count => map.next_value_seed(Count)?.map(Value::from),
                Take::Keys => map.next_value_seed(Keys)?,
            };
            if let Some(value) = value.filter(|v| !v.is_null()) {
                if !self.out.iter().any(|(k, _)| *k == param.key) {
                    self.out.push((param.key, value));
                }
            }
            if seen == self.params.len() {
                // All found: the rest (a query's items) is not read. (The
                // deserializer then errs on the map left open: ignored.)
                return Ok(());
            }
        }
        Ok(())
    }
}

/// A key: the parameter it names, if any (read without being copied).
struct Member(&'static [Param]);

impl<'de> DeserializeSeed<'de> for Member {
    type Value = Option<&'static Param>;

    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<Self::Value, D::Error> {
        d.deserialize_str(self)
    }
}

impl<'de> Visitor<'de> for Member {
    type Value = Option<&'static Param>;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a member's name")
    }

    fn visit_str<E: serde::de::Error>(self, name: &str) -> Result<Self::Value, E> {
        Ok(self.0.iter().find(|p| p.member == name))
    }
}

/// A visitor's methods for the values that are neither a list nor a map:
/// `None`.
macro_rules! not_for_scalars {
    () => {
        fn visit_unit<E>(self) -> Result<Self::Value, E> {
            Ok(None)
        }

        fn visit_bool<E>(self, _: bool) -> Result<Self::Value, E> {
            Ok(None)
        }

        fn visit_i64<E>(self, _: i64) -> Result<Self::Value, E> {
            Ok(None)
        }

        fn visit_u64<E>(self, _: u64) -> Result<Self::Value, E> {
            Ok(None)
        }

        fn visit_f64<E>(self, _: f64) -> Result<Self::Value, E> {
            Ok(None)
        }

        fn visit_str<E>(self, _: &str) -> Result<Self::Value, E> {
            Ok(None)
        }
    };
}

/// How many elements a list (entries a map) has; `None` for anything else.
struct Count;

impl<'de> DeserializeSeed<'de> for Count {
    type Value = Option<u64>;

    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<Self::Value, D::Error> {
        d.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for Count {
    type Value = Option<u64>;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a list or a map")
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
        let mut n = 0;
        while seq.next_element::<IgnoredAny>()?.is_some() {
            n += 1;
        }
        Ok(Some(n))
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
        let mut n = 0;
        while map.next_entry::<IgnoredAny, IgnoredAny>()?.is_some() {
            n += 1;
        }
        Ok(Some(n))
    }

    not_for_scalars!();
}

/// The names of a map's entries, as a list; `None` for anything else.
struct Keys;

impl<'de> DeserializeSeed<'de> for Keys {
    type Value = Option<Value>;

    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<Self::Value, D::Error> {
        d.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for Keys {
    type Value = Option<Value>;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a map")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
        let mut names = Vec::new();
        while let Some((name, IgnoredAny)) = map.next_entry::<String, IgnoredAny>()? {
            names.push(Value::String(name));
        }
        Ok(Some(Value::Array(names)))
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
        while seq.next_element::<IgnoredAny>()?.is_some() {}
        Ok(None)
    }

    not_for_scalars!();
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::aws_parameters::operation;

    fn picked(service: &str, op: &str, request: bool, body: &str) -> Value {
        let o = operation(service, op).unwrap();
        let mut out = Picked::new();
        pick(
            body.as_bytes(),
            if request { o.request } else { o.response },
            &mut out,
        );
        serde_json::from_str(&to_text(&out).unwrap_or_else(|| "{}".into())).unwrap()
    }

    #[test]
    fn members_are_kept_counted_or_named_and_the_rest_skipped() {
        let query = r#"{"TableName":"orders","ConsistentRead":true,"Limit":10,
            "KeyConditionExpression":"pk = :pk","ExpressionAttributeValues":{":pk":{"S":"secret"}},
            "ProjectionExpression":"id, total"}"#;
        assert_eq!(
            picked("DynamoDB", "Query", true, query),
            serde_json::json!({"consistent_read": true, "limit": 10, "projection_expression": "id, total"})
        );
        let scan = r#"{"Items":[{"id":{"S":"a"}},{"id":{"S":"b"}}],"Count":2,"ScannedCount":5,
            "ConsumedCapacity":{"TableName":"orders","CapacityUnits":0.5}}"#;
        assert_eq!(
            picked("DynamoDB", "Scan", false, scan),
            serde_json::json!({"count": 2, "scanned_count": 5,
                "consumed_capacity": {"TableName": "orders", "CapacityUnits": 0.5}})
        );
        let send = r#"{"QueueUrl":"q","MessageBody":"{\"MessageAttributes\":1}",
            "MessageAttributes":{"tenant":{"DataType":"String","StringValue":"t"},"kind":{"DataType":"String","StringValue":"k"}},
            "DelaySeconds":3}"#;
        assert_eq!(
            picked("SQS", "SendMessage", true, send),
            serde_json::json!({"message_attribute_names": ["tenant", "kind"], "delay_seconds": 3})
        );
        let received = r#"{"Messages":[{"Body":"a"},{"Body":"b"},{"Body":"c"}]}"#;
        assert_eq!(
            picked("SQS", "ReceiveMessage", false, received),
            serde_json::json!({"message_count": 3})
        );
    }

    #[test]
    fn reading_stops_once_every_member_is_found() {
        // What follows the last member wanted is not read: not even broken.
        let scan =
            r#"{"Count":2,"ScannedCount":5,"ConsumedCapacity":{"CapacityUnits":1},"Items":[{"#;
        assert_eq!(
            picked("DynamoDB", "Scan", false, scan),
            serde_json::json!({"count": 2, "scanned_count": 5, "consumed_capacity": {"CapacityUnits": 1}})
        );
    }

    #[test]
    fn odd_bodies_give_what_was_read_before() {
        // Not an object; members of the wrong shape; a body cut off.
        assert_eq!(
            picked("SQS", "ReceiveMessage", false, "[1,2]"),
            serde_json::json!({})
        );
        assert_eq!(
            picked("SQS", "ReceiveMessage", false, r#"{"Messages":"none"}"#),
            serde_json::json!({})
        );
        assert_eq!(
            picked("SQS", "SetQueueAttributes", true, r#"{"Attributes":[1]}"#),
            serde_json::json!({})
        );
        assert_eq!(
            picked("DynamoDB", "Scan", false, r#"{"Count":2,"ScannedCount":"#),
            serde_json::json!({"count": 2})
        );
        assert_eq!(
            picked("DynamoDB", "Scan", false, r#"{"Count":null}"#),
            serde_json::json!({})
        );
    }

    #[test]
    fn parameters_are_bounded() {
        let long = "x".repeat(MAX_PARAMETERS_BYTES);
        let picked = vec![
            ("queue_name", Value::String(long)),
            ("delay_seconds", Value::from(3)),
        ];
        let text = to_text(&picked).unwrap();
        assert_eq!(text, r#"{"delay_seconds":3}"#);
        assert_eq!(to_text(&[]), None);
        let many: Picked = (0..1000).map(|_| ("limit", Value::from(123_456))).collect();
        assert!(to_text(&many).unwrap().len() <= MAX_PARAMETERS_BYTES);
    }
}
