use serde::{Deserialize, Serialize};

/// Named maxima checked at the edge of the server. Every one is configurable.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Limits {
    /// Largest record value, in bytes.
    pub record_value_bytes_max: usize,
    /// Largest record key, in bytes.
    pub record_key_bytes_max: usize,
    /// Most headers on one record.
    pub record_headers_max: usize,
    /// Largest gRPC request, in bytes (all records of one append together).
    pub request_bytes_max: usize,
    /// Most records in one append request.
    pub records_per_request_max: usize,
    /// Most partitions in one topic.
    pub partitions_per_topic_max: u32,
    /// Most topics in the cluster.
    pub topics_max: usize,
    /// Cap on the bytes one read returns.
    pub read_bytes_max: usize,
    /// Cap on the records one read returns.
    pub read_records_max: usize,
    /// Longest a read may wait for new data, in milliseconds.
    pub read_wait_ms_max: u64,
    /// Most concurrent subscriptions served by one node.
    pub subscriptions_max: usize,
    /// Most public API requests one node serves at once; more are refused with
    /// `RESOURCE_EXHAUSTED`.
    pub requests_in_flight_max: usize,
    /// Most bytes of public API request messages one node holds at once (read, decoded or
    /// being written); a request that would pass it is refused with `RESOURCE_EXHAUSTED`
    /// before its message is read.
    pub request_bytes_in_flight_max: usize,
    /// The same, per client connection, so one client cannot take the whole node's share.
    pub connection_request_bytes_in_flight_max: usize,
    /// Most requests at once on one connection (HTTP/2 concurrent streams); a client's
    /// further requests wait for a free stream.
    pub connection_streams_max: u32,
}

pub const RECORD_VALUE_BYTES_MAX: usize = 1024 * 1024;
pub const REQUEST_BYTES_MAX: usize = 16 * 1024 * 1024;
pub const RECORDS_PER_REQUEST_MAX: usize = 10_000;
pub const PARTITIONS_PER_TOPIC_MAX: u32 = 10_000;
pub const REQUESTS_IN_FLIGHT_MAX: usize = 1_024;
pub const REQUEST_BYTES_IN_FLIGHT_MAX: usize = 256 * 1024 * 1024;
pub const CONNECTION_REQUEST_BYTES_IN_FLIGHT_MAX: usize = 64 * 1024 * 1024;
pub const CONNECTION_STREAMS_MAX: u32 = 256;

impl Default for Limits {
    fn default() -> Self {
        Limits {
            record_value_bytes_max: RECORD_VALUE_BYTES_MAX,
            record_key_bytes_max: 64 * 1024,
            record_headers_max: 64,
            request_bytes_max: REQUEST_BYTES_MAX,
            records_per_request_max: RECORDS_PER_REQUEST_MAX,
            partitions_per_topic_max: PARTITIONS_PER_TOPIC_MAX,
            topics_max: 10_000,
            read_bytes_max: 8 * 1024 * 1024,
            read_records_max: 100_000,
            read_wait_ms_max: 60_000,
            subscriptions_max: 1_024,
            requests_in_flight_max: REQUESTS_IN_FLIGHT_MAX,
            request_bytes_in_flight_max: REQUEST_BYTES_IN_FLIGHT_MAX,
            connection_request_bytes_in_flight_max: CONNECTION_REQUEST_BYTES_IN_FLIGHT_MAX,
            connection_streams_max: CONNECTION_STREAMS_MAX,
        }
    }
}
