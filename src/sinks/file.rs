//! `type = "file"`: JSON lines appended to a file.

use std::path::PathBuf;

use anyhow::Context as _;
use serde::Deserialize;
use tokio::io::AsyncWriteExt;

use crate::ack::DeliveryStatus;
use crate::event::settle_and_count;
use crate::sinks::json;
use crate::topology::component::{ComponentTask, SinkContext};

#[derive(Clone, Debug, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct FileSinkConfig {
    /// The file to write. Its directory must exist.
    pub path: PathBuf,
    /// Append to an existing file (`true`) or empty it at start (`false`).
    #[serde(default = "yes")]
    pub append: bool,
    /// fsync after every batch before acknowledging it, so acknowledged lines
    /// survive a power loss, not only an agent crash.
    #[serde(default)]
    pub fsync: bool,
    /// Add the `resource` object to every line.
    #[serde(default)]
    pub include_resource: bool,
}

fn yes() -> bool {
    true
}

pub fn build(config: FileSinkConfig, mut cx: SinkContext) -> ComponentTask {
    let sink = format!("sinks.{}", cx.name);
    Box::pin(async move {
        let path = &config.path;
        let mut file = tokio::fs::OpenOptions::new()
            .create(true)
            .write(true)
            .append(config.append)
            .truncate(!config.append)
            .open(path)
            .await
            .with_context(|| format!("cannot open {}", path.display()))?;
        let mut buf = Vec::with_capacity(64 * 1024);
        while let Some(mut batch) = cx.input.recv().await {
            buf.clear();
            for event in &batch {
                json::encode(event, config.include_resource, &mut buf);
            }
            let written = async {
                file.write_all(&buf).await?;
                file.flush().await?;
                if config.fsync {
                    file.sync_data().await?;
                }
                std::io::Result::Ok(())
            }
            .await;
            if let Err(e) = written {
                settle_and_count(&sink, &mut batch, DeliveryStatus::Errored);
                return Err(e).with_context(|| format!("cannot write to {}", path.display()));
            }
            settle_and_count(&sink, &mut batch, DeliveryStatus::Delivered);
        }
        Ok(())
    })
}
