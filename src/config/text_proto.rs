//! TF Serving's config files are protobuf text format. They are parsed against the descriptors
//! compiled from proto/ (a real parser, not pattern matching), and errors carry line:column.

use miette::Diagnostic;
use prost_reflect::{DescriptorPool, DynamicMessage};
use thiserror::Error;

use crate::proto::FILE_DESCRIPTOR_SET;

#[derive(Debug, Error)]
pub enum TextProtoError {
    #[error("cannot read {path}: {source}")]
    Io {
        path: String,
        #[source]
        source: std::io::Error,
    },
    #[error("Error parsing text-format {message_type} in {path} at line {line}, column {column}: {reason}")]
    Syntax { message_type: String, path: String, line: usize, column: usize, reason: String },
    #[error("descriptor problem for {0}: {1}")]
    Descriptor(String, String),
}

/// 1-based line and column of a byte offset.
fn line_column(text: &str, offset: usize) -> (usize, usize) {
    let before = &text[..offset.min(text.len())];
    let line = before.matches('\n').count() + 1;
    let column = before.rsplit('\n').next().map_or(0, |l| l.chars().count()) + 1;
    (line, column)
}

/// Parses `text` as the message `full_name` and converts it to the generated type `T`.
pub fn parse<T: prost::Message + Default>(full_name: &str, text: &str, path: &str) -> Result<T, TextProtoError> {
    let descriptor_error = |e: String| TextProtoError::Descriptor(full_name.to_string(), e);
    let pool = DescriptorPool::decode(FILE_DESCRIPTOR_SET).map_err(|e| descriptor_error(e.to_string()))?;
    let descriptor = pool.get_message_by_name(full_name).ok_or_else(|| descriptor_error("not compiled in".into()))?;
    let message = DynamicMessage::parse_text_format(descriptor, text).map_err(|err| {
        let offset = err.labels().and_then(|mut l| l.next()).map_or(0, |span| span.offset());
        let (line, column) = line_column(text, offset);
        TextProtoError::Syntax {
            message_type: full_name.to_string(),
            path: path.to_string(),
            line,
            column,
            reason: err.to_string(),
        }
    })?;
    message.transcode_to::<T>().map_err(|e| descriptor_error(e.to_string()))
}

/// Reads and parses a config file.
pub fn parse_file<T: prost::Message + Default>(full_name: &str, path: &std::path::Path) -> Result<T, TextProtoError> {
    let text = std::fs::read_to_string(path)
        .map_err(|source| TextProtoError::Io { path: path.display().to_string(), source })?;
    parse(full_name, &text, &path.display().to_string())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::proto::tensorflow::serving::MonitoringConfig;

    const MONITORING: &str = "tensorflow.serving.MonitoringConfig";

    #[test]
    fn parses_monitoring_config() {
        let text = "prometheus_config {\n  enable: true,\n  path: \"/monitoring/prometheus/metrics\"\n}\n";
        let config: MonitoringConfig = parse(MONITORING, text, "m.txt").expect("parse");
        let prometheus = config.prometheus_config.expect("prometheus_config");
        assert!(prometheus.enable);
        assert_eq!(prometheus.path, "/monitoring/prometheus/metrics");
    }

    #[test]
    fn errors_name_line_and_column() {
        let text = "prometheus_config {\n  enable: true\n  pathx: \"/m\"\n}\n";
        let err = parse::<MonitoringConfig>(MONITORING, text, "m.txt").expect_err("bad field");
        let message = err.to_string();
        assert!(message.contains("line 3, column 3"), "{message}");
        assert!(message.starts_with("Error parsing text-format tensorflow.serving.MonitoringConfig"), "{message}");
    }
}
