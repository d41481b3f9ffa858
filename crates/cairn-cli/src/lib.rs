//! The `cairn` client commands (topics, produce, consume, event streams, cluster status),
//! built on `cairn-client`. The `cairn` binary in `cairn-server` embeds [`ClientCommand`]
//! and flattens [`ServerArg`], then calls [`run`].

mod client_command;
mod cluster_command;
mod consume_command;
mod event_printer;
mod group_command;
mod group_consume;
mod header_arg;
mod leader_command;
mod node_command;
mod operation_command;
mod output_format;
mod partition_command;
mod produce_command;
mod progress;
mod query_command;
mod read_token;
mod rebalance_command;
mod record_batcher;
mod record_json;
mod record_printer;
mod server_arg;
mod start_from;
mod stdin_lines;
mod stream_args;
mod stream_change_command;
mod stream_command;
mod stream_info;
mod table;
mod text;
mod topic_command;

pub use client_command::{ClientCommand, run};
pub use cluster_command::ClusterCommand;
pub use consume_command::{ConsistencyArg, ConsumeCommand};
pub use group_command::GroupCommand;
pub use header_arg::HeaderArg;
pub use leader_command::{LeaderCommand, TopicPartition};
pub use node_command::NodeCommand;
pub use operation_command::OperationCommand;
pub use output_format::OutputFormat;
pub use partition_command::PartitionCommand;
pub use produce_command::ProduceCommand;
pub use read_token::ReadToken;
pub use rebalance_command::RebalanceCommand;
pub use record_json::RecordJson;
pub use server_arg::ServerArg;
pub use start_from::StartFrom;
pub use stream_args::DataArg;
pub use stream_change_command::{StreamDeleteArgs, StreamMetadataArgs};
pub use stream_command::{StreamAppendArgs, StreamCommand, StreamReadArgs};
pub use topic_command::TopicCommand;

/// Whether an error is a closed stdout (`cairn consume ... | head`): a normal end.
fn is_broken_pipe(error: &anyhow::Error) -> bool {
    error.chain().any(|cause| {
        cause.downcast_ref::<std::io::Error>().is_some_and(|io| io.kind() == std::io::ErrorKind::BrokenPipe)
    })
}
