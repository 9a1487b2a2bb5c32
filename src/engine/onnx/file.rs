//! Reads a model file through a small window instead of into one buffer.
//!
//! Decoding from one buffer of the whole file leaves every initializer's bytes a view of it, so
//! the file stays in memory until the last weight is packed, and each weight a pass rewrites or
//! the planner packs sits in memory twice (the file, and the new form) until the very end: the
//! load's peak was about twice the weights. Read through a window, each `bytes` field (an
//! initializer's `raw_data`) gets an allocation of its own, freed as soon as that one weight has
//! its final form, and the file itself is never in memory at once.

use std::fs::File;
use std::io::{self, Read};
use std::path::Path;

use prost::bytes::Buf;

/// Large enough that a read is a small share of decoding its bytes, small next to any weight.
const WINDOW: usize = 1 << 20;

/// A [`Buf`] over a file's bytes, `WINDOW` at a time. `Buf` cannot fail, so a read error (or a
/// file that shrank after it was opened) ends the buffer early; the caller must check
/// [`FileBuf::error`] after decoding, whatever the decoder returned (a message cut at the end of
/// a field decodes without error).
pub(super) struct FileBuf {
    file: File,
    window: Vec<u8>,
    /// Consumed bytes of `window`.
    start: usize,
    /// Bytes not yet consumed, in `window` and in the file together.
    remaining: usize,
    error: Option<io::Error>,
}

impl FileBuf {
    pub(super) fn open(path: &Path) -> io::Result<Self> {
        let file = File::open(path)?;
        let len = file.metadata()?.len();
        let remaining = usize::try_from(len).map_err(|_| io::Error::other(format!("{len} bytes do not fit in memory")))?;
        let mut buf = Self { file, window: Vec::with_capacity(WINDOW.min(remaining)), start: 0, remaining, error: None };
        buf.refill();
        Ok(buf)
    }

    /// Why the buffer ended before the file's length, if it did.
    pub(super) fn error(self) -> Option<io::Error> {
        self.error
    }

    /// Replaces the consumed window with the next bytes of the file; on a failed read the
    /// window stays empty and nothing is left to read.
    fn refill(&mut self) {
        self.start = 0;
        self.window.resize(WINDOW.min(self.remaining), 0);
        if let Err(e) = self.file.read_exact(&mut self.window) {
            let e = if e.kind() == io::ErrorKind::UnexpectedEof {
                io::Error::new(io::ErrorKind::UnexpectedEof, "the file shrank while it was read")
            } else {
                e
            };
            self.window.clear();
            self.remaining = 0;
            self.error.get_or_insert(e);
        }
    }
}

impl Buf for FileBuf {
    fn remaining(&self) -> usize {
        self.remaining
    }

    fn chunk(&self) -> &[u8] {
        &self.window[self.start..]
    }

    fn advance(&mut self, cnt: usize) {
        let cnt = cnt.min(self.window.len() - self.start);
        self.start += cnt;
        self.remaining = self.remaining.saturating_sub(cnt);
        if self.start == self.window.len() && self.remaining > 0 {
            self.refill();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use prost::Message;

    use crate::proto::onnx::{GraphProto, ModelProto, TensorProto};

    fn model_with_weights(sizes: &[usize]) -> ModelProto {
        let initializer = sizes
            .iter()
            .enumerate()
            .map(|(i, &n)| TensorProto {
                name: format!("w{i}"),
                dims: vec![n as i64],
                data_type: 1,
                raw_data: (0..n * 4).map(|b| (b * 7 + i) as u8).collect::<Vec<u8>>().into(),
                ..Default::default()
            })
            .collect();
        ModelProto { ir_version: 8, graph: Some(GraphProto { name: "g".into(), initializer, ..Default::default() }), ..Default::default() }
    }

    /// Weights smaller than the window, one spanning several windows, and fields straddling a
    /// window's end all decode to what one buffer decodes.
    #[test]
    fn decodes_what_one_buffer_decodes() {
        let model = model_with_weights(&[3, WINDOW / 4 - 5, 1, WINDOW, 2 * WINDOW / 4 + 9, 0, 17]);
        let dir = std::env::temp_dir().join(format!("file-buf-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("dir");
        let path = dir.join("model.onnx");
        std::fs::write(&path, model.encode_to_vec()).expect("write");
        let mut buf = FileBuf::open(&path).expect("open");
        let decoded = ModelProto::decode(&mut buf).expect("decode");
        assert!(buf.error().is_none());
        assert_eq!(decoded, model);
        std::fs::remove_dir_all(&dir).expect("clean up");
    }

    /// A file cut short ends the buffer early, and `error` says why: the decoder may even accept
    /// what it got (a message that ends with a shortened field), so the load checks `error`
    /// whatever the decode returned.
    #[test]
    fn a_short_read_ends_the_buffer_and_is_kept() {
        let dir = std::env::temp_dir().join(format!("file-buf-short-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("dir");
        let path = dir.join("model.onnx");
        std::fs::write(&path, model_with_weights(&[WINDOW]).encode_to_vec()).expect("write");
        let mut buf = FileBuf::open(&path).expect("open");
        // the file loses its tail after it was opened
        std::fs::OpenOptions::new().write(true).open(&path).expect("reopen").set_len(WINDOW as u64 + 100).expect("truncate");
        let _ = ModelProto::decode(&mut buf);
        let error = buf.error().expect("kept");
        assert_eq!(error.kind(), io::ErrorKind::UnexpectedEof, "{error}");
        std::fs::remove_dir_all(&dir).expect("clean up");
    }
}
