//! TF Serving's config files are protobuf text format. They are parsed against the descriptors
//! compiled from proto/ (a real parser, not pattern matching), and errors carry line:column.

use std::sync::OnceLock;

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

/// Deepest message nesting a config may use, as protobuf's own default recursion limit. Real
/// configs nest a handful of levels.
pub const MAX_NESTING: usize = 100;

/// Byte offset of the first `{` or `<` that opens a message deeper than [`MAX_NESTING`],
/// skipping strings and comments.
///
/// Why: the text-format parser recurses once per nested message and has no limit of its own,
/// and `Any` fields (`custom_model_config`, `source_adapter_config`) accept any message in the
/// compiled descriptors, including ONNX's self-nesting GraphProto. A few kilobytes of
/// `{ g { node { attribute { g {` would otherwise overflow the stack and abort the server.
fn too_deep(text: &str) -> Option<usize> {
    let bytes = text.as_bytes();
    let mut depth = 0usize;
    let mut i = 0;
    while let Some(&b) = bytes.get(i) {
        match b {
            b'#' => {
                while bytes.get(i).is_some_and(|&c| c != b'\n') {
                    i += 1;
                }
            }
            b'"' | b'\'' => {
                i += 1;
                while let Some(&c) = bytes.get(i) {
                    match c {
                        b'\\' => i += 1,
                        c if c == b || c == b'\n' => break,
                        _ => {}
                    }
                    i += 1;
                }
            }
            b'{' | b'<' => {
                depth += 1;
                if depth > MAX_NESTING {
                    return Some(i);
                }
            }
            b'}' | b'>' => depth = depth.saturating_sub(1),
            _ => {}
        }
        i += 1;
    }
    None
}

/// The compiled-in descriptors, decoded once: decoding them costs far more than parsing a
/// typical config, and the model config file is re-read on every poll.
fn descriptors() -> Result<&'static DescriptorPool, &'static String> {
    static POOL: OnceLock<Result<DescriptorPool, String>> = OnceLock::new();
    POOL.get_or_init(|| DescriptorPool::decode(FILE_DESCRIPTOR_SET).map_err(|e| e.to_string())).as_ref()
}

/// Parses `text` as the message `full_name` and converts it to the generated type `T`.
pub fn parse<T: prost::Message + Default>(full_name: &str, text: &str, path: &str) -> Result<T, TextProtoError> {
    if let Some(offset) = too_deep(text) {
        let (line, column) = line_column(text, offset);
        return Err(TextProtoError::Syntax {
            message_type: full_name.to_string(),
            path: path.to_string(),
            line,
            column,
            reason: format!("messages are nested more than {MAX_NESTING} levels deep"),
        });
    }
    let descriptor_error = |e: String| TextProtoError::Descriptor(full_name.to_string(), e);
    let pool = descriptors().map_err(|e| descriptor_error(e.clone()))?;
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
    fn nesting_is_capped_before_the_parser_recurses() {
        let nested = |levels: usize| {
            let mut text = String::from("custom_model_config { [type.googleapis.com/onnx.GraphProto] { ");
            text.push_str(&"node { attribute { g { ".repeat(levels));
            text.push_str(&"} } } ".repeat(levels));
            text.push_str("} }");
            text
        };
        let config = "tensorflow.serving.ModelServerConfig";
        let err = parse::<crate::proto::tensorflow::serving::ModelServerConfig>(config, &nested(100_000), "deep.config")
            .expect_err("too deep");
        assert!(err.to_string().contains("nested more than 100 levels deep"), "{err}");
        assert!(err.to_string().contains("line 1, column "), "{err}");
        // Below the cap the same shape parses (and is then refused as not a model list).
        let shallow: crate::proto::tensorflow::serving::ModelServerConfig = parse(config, &nested(30), "ok.config").expect("shallow");
        assert!(shallow.config.is_some());
        // Braces inside strings and comments do not count.
        let text = format!("# {}\nprometheus_config {{ path: '{}' }}", "{".repeat(200), "<".repeat(200));
        assert!(parse::<MonitoringConfig>(MONITORING, &text, "m.txt").is_ok());
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
