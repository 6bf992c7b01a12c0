//! `type = "console"`: JSON lines on standard output.

use serde::Deserialize;
use tokio::io::AsyncWriteExt;

use crate::ack::DeliveryStatus;
use crate::event::settle_and_count;
use crate::sinks::json;
use crate::topology::component::{ComponentTask, SinkContext};

#[derive(Clone, Debug, Default, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ConsoleConfig {
    /// Add the `resource` object (host, runner, agent) to every line.
    #[serde(default)]
    pub include_resource: bool,
}

pub fn build(config: ConsoleConfig, mut cx: SinkContext) -> ComponentTask {
    let sink = format!("sinks.{}", cx.name);
    Box::pin(async move {
        let mut stdout = tokio::io::stdout();
        let mut buf = Vec::with_capacity(64 * 1024);
        while let Some(mut batch) = cx.input.recv().await {
            buf.clear();
            for event in &batch {
                json::encode(event, config.include_resource, &mut buf);
            }
            let written = async {
                stdout.write_all(&buf).await?;
                stdout.flush().await
            }
            .await;
            match written {
                Ok(()) => settle_and_count(&sink, &mut batch, DeliveryStatus::Delivered),
                Err(e) => {
                    settle_and_count(&sink, &mut batch, DeliveryStatus::Errored);
                    return Err(anyhow::anyhow!("cannot write to standard output: {e}"));
                }
            }
        }
        Ok(())
    })
}
