//! The parameters of an AWS call that the official X-Ray SDKs record in a
//! subsegment's `aws` block (their parameter whitelists), by service and
//! operation: which members of the request and of the response, and under
//! which name.
//!
//! [`crate::aws_sdk::XrayInterceptor`] reads them from the bodies it sees
//! (DynamoDB's and SQS's JSON) and records them in one field,
//! [`PARAMETERS_FIELD`]; the worker puts the names of this table into the
//! `aws` block and nothing else ([`is_parameter_key`]). The resources the
//! SDKs also record (`TableName`, `QueueUrl`, a batch's tables, Lambda's
//! `FunctionName` and `InvocationType`, SNS's `TopicArn`) have fields of
//! their own and are not listed here.

/// The field whose value, a JSON object, holds an AWS call's parameters
/// (only the names of this table are read from it).
pub(crate) const PARAMETERS_FIELD: &str = "xray.aws.parameters";

/// How a member is recorded.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[cfg_attr(not(feature = "aws-sdk"), allow(dead_code))]
pub(crate) enum Take {
    /// Its value, as it is.
    Value,
    /// How many elements (a list) or entries (a map) it has.
    Count,
    /// The names of its entries (a map).
    Keys,
}

/// One member of a request or a response.
#[derive(Debug)]
#[cfg_attr(not(feature = "aws-sdk"), allow(dead_code))]
pub(crate) struct Param {
    /// Its name in the body.
    pub(crate) member: &'static str,
    /// Its name in the `aws` block.
    pub(crate) key: &'static str,
    pub(crate) take: Take,
}

/// The parameters recorded for one operation.
#[derive(Debug)]
#[cfg_attr(not(feature = "aws-sdk"), allow(dead_code))]
pub(crate) struct Operation {
    pub(crate) service: &'static str,
    pub(crate) name: &'static str,
    pub(crate) request: &'static [Param],
    pub(crate) response: &'static [Param],
}

const fn value(member: &'static str, key: &'static str) -> Param {
    Param {
        member,
        key,
        take: Take::Value,
    }
}

const fn count(member: &'static str, key: &'static str) -> Param {
    Param {
        member,
        key,
        take: Take::Count,
    }
}

const fn keys(member: &'static str, key: &'static str) -> Param {
    Param {
        member,
        key,
        take: Take::Keys,
    }
}

const fn op(
    service: &'static str,
    name: &'static str,
    request: &'static [Param],
    response: &'static [Param],
) -> Operation {
    Operation {
        service,
        name,
        request,
        response,
    }
}

const CONSUMED: Param = value("ConsumedCapacity", "consumed_capacity");
const METRICS: Param = value("ItemCollectionMetrics", "item_collection_metrics");
const CONSISTENT_READ: Param = value("ConsistentRead", "consistent_read");
const PROJECTION: Param = value("ProjectionExpression", "projection_expression");
const ATTRIBUTES_TO_GET: Param = value("AttributesToGet", "attributes_to_get");
const INDEX_NAME: Param = value("IndexName", "index_name");
const LIMIT: Param = value("Limit", "limit");
const SELECT: Param = value("Select", "select");
const THROUGHPUT: Param = value("ProvisionedThroughput", "provisioned_throughput");
const FAILED: Param = value("Failed", "failed");
const VISIBILITY_TIMEOUT: Param = value("VisibilityTimeout", "visibility_timeout");

/// The operations whose JSON bodies hold parameters to record (Lambda's and
/// S3's are in their URLs and headers: see [`URL_KEYS`]).
pub(crate) const OPERATIONS: &[Operation] = &[
    op("DynamoDB", "BatchGetItem", &[], &[CONSUMED]),
    op("DynamoDB", "BatchWriteItem", &[], &[CONSUMED, METRICS]),
    op(
        "DynamoDB",
        "CreateTable",
        &[
            value("GlobalSecondaryIndexes", "global_secondary_indexes"),
            value("LocalSecondaryIndexes", "local_secondary_indexes"),
            THROUGHPUT,
        ],
        &[],
    ),
    op("DynamoDB", "DeleteItem", &[], &[CONSUMED, METRICS]),
    op(
        "DynamoDB",
        "GetItem",
        &[CONSISTENT_READ, PROJECTION],
        &[CONSUMED],
    ),
    op(
        "DynamoDB",
        "ListTables",
        &[
            value("ExclusiveStartTableName", "exclusive_start_table_name"),
            LIMIT,
        ],
        &[count("TableNames", "table_count")],
    ),
    op("DynamoDB", "PutItem", &[], &[CONSUMED, METRICS]),
    op(
        "DynamoDB",
        "Query",
        &[
            ATTRIBUTES_TO_GET,
            CONSISTENT_READ,
            INDEX_NAME,
            LIMIT,
            PROJECTION,
            value("ScanIndexForward", "scan_index_forward"),
            SELECT,
        ],
        &[CONSUMED],
    ),
    op(
        "DynamoDB",
        "Scan",
        &[
            ATTRIBUTES_TO_GET,
            CONSISTENT_READ,
            INDEX_NAME,
            LIMIT,
            PROJECTION,
            value("Segment", "segment"),
            SELECT,
            value("TotalSegments", "total_segments"),
        ],
        &[
            CONSUMED,
            value("Count", "count"),
            value("ScannedCount", "scanned_count"),
        ],
    ),
    op("DynamoDB", "UpdateItem", &[], &[CONSUMED, METRICS]),
    op(
        "DynamoDB",
        "UpdateTable",
        &[
            value("AttributeDefinitions", "attribute_definitions"),
            value(
                "GlobalSecondaryIndexUpdates",
                "global_secondary_index_updates",
            ),
            THROUGHPUT,
        ],
        &[],
    ),
    op("SQS", "AddPermission", &[value("Label", "label")], &[]),
    op("SQS", "ChangeMessageVisibility", &[VISIBILITY_TIMEOUT], &[]),
    op("SQS", "ChangeMessageVisibilityBatch", &[], &[FAILED]),
    op(
        "SQS",
        "CreateQueue",
        &[
            value("Attributes", "attributes"),
            value("QueueName", "queue_name"),
        ],
        &[],
    ),
    op("SQS", "DeleteMessageBatch", &[], &[FAILED]),
    op(
        "SQS",
        "GetQueueAttributes",
        &[],
        &[value("Attributes", "attributes")],
    ),
    op(
        "SQS",
        "GetQueueUrl",
        &[
            value("QueueName", "queue_name"),
            value("QueueOwnerAWSAccountId", "queue_owner_aws_account_id"),
        ],
        // The queue's URL is the call's `queue_url`.
        &[],
    ),
    op(
        "SQS",
        "ListDeadLetterSourceQueues",
        &[],
        &[value("QueueUrls", "queue_urls")],
    ),
    op(
        "SQS",
        "ListQueues",
        &[value("QueueNamePrefix", "queue_name_prefix")],
        &[count("QueueUrls", "queue_count")],
    ),
    op(
        "SQS",
        "ReceiveMessage",
        &[
            value("AttributeNames", "attribute_names"),
            value("MaxNumberOfMessages", "max_number_of_messages"),
            value("MessageAttributeNames", "message_attribute_names"),
            VISIBILITY_TIMEOUT,
            value("WaitTimeSeconds", "wait_time_seconds"),
        ],
        &[count("Messages", "message_count")],
    ),
    op(
        "SQS",
        "SendMessage",
        &[
            value("DelaySeconds", "delay_seconds"),
            keys("MessageAttributes", "message_attribute_names"),
        ],
        &[value("MessageId", "message_id")],
    ),
    op(
        "SQS",
        "SendMessageBatch",
        &[count("Entries", "message_count")],
        &[
            count("Failed", "failed_count"),
            count("Successful", "successful_count"),
        ],
    ),
    op(
        "SQS",
        "SetQueueAttributes",
        &[keys("Attributes", "attribute_names")],
        &[],
    ),
];

/// The parameters read from a request's URL and headers and a response's
/// status: Lambda's `Invoke`'s `LogType` (`X-Amz-Log-Type`), `Qualifier`
/// (the query's) and `StatusCode`, `InvokeAsync`'s `Status`; S3's object
/// `Key` (the path's), `VersionId` and a listing's `Prefix` (the query's),
/// `CopySource` (`X-Amz-Copy-Source`), and its extended request id
/// (`x-amz-id-2`, as `id_2`, which the official SDKs record beside the
/// request id). (S3's bucket is the call's `bucket_name`.)
pub(crate) const URL_KEYS: &[&str] = &[
    "id_2",
    "log_type",
    "qualifier",
    "status_code",
    "status",
    "key",
    "version_id",
    "prefix",
    "copy_source",
];

/// The parameters recorded for `service`'s `operation` (names as the AWS SDK
/// for Rust gives them: `DynamoDB`, `GetItem`), if any.
#[cfg_attr(not(feature = "aws-sdk"), allow(dead_code))]
pub(crate) fn operation(service: &str, operation: &str) -> Option<&'static Operation> {
    OPERATIONS
        .iter()
        .find(|o| o.name == operation && o.service.eq_ignore_ascii_case(service))
}

/// Whether `key` is a parameter's name in the `aws` block: the only keys
/// [`PARAMETERS_FIELD`] gives it.
pub(crate) fn is_parameter_key(key: &str) -> bool {
    URL_KEYS.contains(&key)
        || OPERATIONS
            .iter()
            .flat_map(|o| o.request.iter().chain(o.response))
            .any(|p| p.key == key)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// No parameter takes a name the `aws` block already writes, and none
    /// is listed twice in one operation.
    #[test]
    fn keys_are_new_and_unique_per_operation() {
        let own = [
            "account_id",
            "operation",
            "region",
            "request_id",
            "queue_url",
            "table_name",
            "table_names",
            "bucket_name",
            "topic_arn",
            "function_name",
            "invocation_type",
            "function_error",
            "retries",
            "xray",
            "ec2",
            "ecs",
            "eks",
            "elastic_beanstalk",
            "cloudwatch_logs",
        ];
        for o in OPERATIONS {
            let keys: Vec<&str> = o.request.iter().chain(o.response).map(|p| p.key).collect();
            for (i, k) in keys.iter().enumerate() {
                assert!(!own.contains(k), "{}.{}: {k}", o.service, o.name);
                assert!(
                    !keys[..i].contains(k),
                    "{}.{}: {k} twice",
                    o.service,
                    o.name
                );
                assert!(is_parameter_key(k));
            }
        }
        assert!(!is_parameter_key("table_name"));
        assert!(!is_parameter_key("ConsumedCapacity"));
        assert!(is_parameter_key("status_code"));
        for k in URL_KEYS {
            assert!(
                !OPERATIONS
                    .iter()
                    .flat_map(|o| o.request.iter().chain(o.response))
                    .any(|p| p.key == *k),
                "{k}"
            );
        }
    }

    #[test]
    fn operations_are_found_by_the_sdk_names() {
        assert_eq!(operation("DynamoDB", "Query").unwrap().name, "Query");
        assert_eq!(operation("dynamodb", "Scan").unwrap().response.len(), 3);
        assert!(operation("DynamoDB", "DescribeTable").is_none());
        assert!(operation("S3", "GetObject").is_none());
    }
}
