//! Streamed uploads ([`Store::begin`]) to S3, whose names are known only at the end.
//!
//! Up to the multipart threshold the bytes stay in memory and go as one create-only `PUT`
//! under the final name at [`Upload::finish`] (a default pack: one request, no temporary
//! object). Past it, they stream as a multipart upload to `tmp/<kind>-<random>` (memory: one
//! part per upload in flight), and `finish` copies the object server-side to its name and
//! removes the temporary one. A dropped upload aborts its multipart upload; one a killed
//! process left is invisible to listings until the service expires it (an
//! `AbortIncompleteMultipartUpload` lifecycle rule), and a completed temporary object is
//! removed by [`Store::sweep_temporaries`].

use std::sync::Arc;

use opendal::options::{CopyOptions, WriteOptions};
use opendal::{Buffer, Writer};

use super::{key, Inner};
use crate::error::{Error, Result};
use crate::id::hex_encode;
use crate::store::{FileKind, Store, Upload};

/// The folder of temporary objects, under the prefix.
pub(super) const TMP_DIR: &str = "tmp/";

pub(super) struct S3Upload {
    inner: Arc<Inner>,
    kind: FileKind,
    buf: Vec<u8>,
    spill: Option<Spill>,
}

/// A multipart upload to a temporary key.
struct Spill {
    tmp: String,
    writer: Option<Writer>,
}

impl S3Upload {
    pub(super) fn new(inner: Arc<Inner>, kind: FileKind) -> S3Upload {
        S3Upload { inner, kind, buf: Vec::new(), spill: None }
    }

    fn start_spill(&mut self) -> Result<()> {
        let name = if self.kind.dir().is_empty() { "config" } else { self.kind.dir() };
        let tmp = format!("{TMP_DIR}{name}-{}", hex_encode(&crate::crypto::random_array::<16>()?));
        let options =
            WriteOptions { chunk: Some(self.inner.options.part_size), concurrent: 4, ..WriteOptions::default() };
        let writer = self
            .inner
            .run(self.inner.op.writer_options(&tmp, options))
            .map_err(|e| self.inner.error(&e, "multipart upload", &tmp))?;
        self.spill = Some(Spill { tmp, writer: Some(writer) });
        Ok(())
    }

    fn write_spilled(&mut self, data: Vec<u8>) -> Result<()> {
        let spill = self.spill.as_mut().expect("spilled");
        let writer =
            spill.writer.as_mut().ok_or_else(|| Error::Io(std::io::Error::other("upload already finished")))?;
        let inner = &self.inner;
        inner.run(writer.write(Buffer::from(data))).map_err(|e| inner.error(&e, "upload part", &spill.tmp))
    }
}

impl Upload for S3Upload {
    fn write(&mut self, data: &[u8]) -> Result<()> {
        if self.spill.is_some() {
            return self.write_spilled(data.to_vec());
        }
        self.buf.extend_from_slice(data);
        if self.buf.len() > self.inner.options.multipart_threshold {
            self.start_spill()?;
            let data = std::mem::take(&mut self.buf);
            self.write_spilled(data)?;
        }
        Ok(())
    }

    fn finish(mut self: Box<Self>, _store: &dyn Store, name: &str) -> Result<()> {
        let path = key(self.kind, name)?;
        let Some(mut spill) = self.spill.take() else {
            return self.inner.put(&path, Buffer::from(std::mem::take(&mut self.buf)));
        };
        let inner = self.inner.clone();
        let mut writer =
            spill.writer.take().ok_or_else(|| Error::Io(std::io::Error::other("upload already finished")))?;
        let closed = inner.run(writer.close());
        let result = match closed {
            Err(e) => {
                let _ = inner.run(writer.abort());
                Err(inner.error(&e, "complete multipart upload", &spill.tmp))
            }
            Ok(_) if inner.create_only() != Some(true) && inner.exists(&path)? => Err(Error::AlreadyExists(path)),
            Ok(_) => {
                let options = CopyOptions { if_not_exists: true, ..CopyOptions::default() };
                inner
                    .run(inner.op.copy_options(&spill.tmp, &path, options))
                    .map(|_| ())
                    .map_err(|e| inner.error(&e, "COPY", &path))
            }
        };
        // A temporary object left here is swept later.
        let _ = inner.run(inner.op.delete(&spill.tmp));
        result
    }
}

impl Drop for S3Upload {
    fn drop(&mut self) {
        if let Some(mut writer) = self.spill.as_mut().and_then(|s| s.writer.take()) {
            let _ = self.inner.run(writer.abort());
        }
    }
}
