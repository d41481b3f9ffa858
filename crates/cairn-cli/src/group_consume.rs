//! `cairn consume --group`: consuming as a member of a consumer group.

use std::time::Duration;

use anyhow::Context as _;
use cairn_client::{CairnClient, GroupConsumer, GroupConsumerConfig};

use crate::ConsumeCommand;
use crate::consume_command::Printer;

/// How long a `--group` consume without `--follow` waits for records before it stops.
const IDLE_STOP: Duration = Duration::from_secs(2);

pub(crate) async fn consume(
    client: &CairnClient,
    group: &str,
    command: &ConsumeCommand,
    printer: &mut Printer,
    remaining: &mut Option<u64>,
) -> anyhow::Result<()> {
    let mut config = GroupConsumerConfig::new(group, vec![command.topic.clone()]);
    config.client_id = "cairn-cli".to_string();
    config.start_without_position = command.from.to_start_position();
    let mut consumer = GroupConsumer::join(client.clone(), config).await?;
    let ctrl_c = tokio::signal::ctrl_c();
    tokio::pin!(ctrl_c);
    let poll_timeout = if command.follow { Duration::from_secs(1) } else { IDLE_STOP };
    while *remaining != Some(0) {
        tokio::select! {
            signal = &mut ctrl_c => {
                signal.context("listening for Ctrl-C")?;
                break;
            }
            polled = consumer.poll(poll_timeout) => {
                let Some(batch) = polled? else {
                    if command.follow { continue } else { break }
                };
                let mut printed = 0;
                for record in &batch.records {
                    if *remaining == Some(0) {
                        break;
                    }
                    printer.print(batch.partition, record)?;
                    printed += 1;
                    *remaining = remaining.map(|remaining| remaining - 1);
                }
                printer.flush()?;
                if printed < batch.records.len() {
                    // --max stopped inside the batch: commit only what was printed.
                    let last = &batch.records[printed.saturating_sub(1)];
                    consumer.seek(&batch.topic, batch.partition, last.offset + 1);
                }
                consumer.commit().await?;
            }
        }
    }
    consumer.leave().await?;
    Ok(())
}
