/// What to create: `CairnClient::create_topic`'s argument.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct CreateTopicOptions {
    pub name: String,
    pub partitions: u32,
    /// 0 lets the server choose (today: 1).
    pub replication_factor: u32,
    /// How long records are kept; `None` is the server's default.
    pub retention_ms: Option<u64>,
    /// How many bytes per partition are kept; `None` is the server's default.
    pub retention_bytes: Option<u64>,
}

impl CreateTopicOptions {
    /// A topic with the server's default replication and retention.
    pub fn new(name: impl Into<String>, partitions: u32) -> Self {
        CreateTopicOptions { name: name.into(), partitions, ..Default::default() }
    }
}
