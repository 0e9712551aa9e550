//! Sealing the session's folders into trees at commit: children first, each folder's tree
//! encoded, refused when it would exceed the blob limit, and sealed into a tree pack unless
//! the index or this session already holds it. Files' chunk lists enter the files cache here,
//! and folders the walk listed in full enter the folder cache; a folder the walk found
//! unchanged keeps its tree id without an encode or a hash.

use std::collections::BTreeMap;
use std::sync::atomic::Ordering;

use crate::error::{Error, Location, Result};
use crate::format::blob::{self, BlobKind};
use crate::format::snapshot::{Node, NodeContent, Tree};
use crate::id::TreeId;

use super::{BackupSession, Entry, FileMeta, Fold};

impl BackupSession<'_> {
    /// Seals the tree of `root` and of every folder below it (children first) and returns the
    /// root's id. Iterative, with a stack of folders being built: a tree nested to the format's
    /// limit must not exhaust the thread's stack.
    pub(super) fn store_tree(&mut self, root: BTreeMap<Vec<u8>, Entry>, path: &str) -> Result<TreeId> {
        struct Frame {
            path: String,
            children: std::collections::btree_map::IntoIter<Vec<u8>, Entry>,
            nodes: Vec<Node>,
            /// The folder's name and metadata in its parent (none for the root).
            own: Option<(Vec<u8>, FileMeta)>,
            /// What the walk found out about it (see `Fold`).
            fold: Option<Box<Fold>>,
            /// Every file entered the files cache and every subfolder the folder cache, so
            /// far: the folder's tree may enter the folder cache.
            recordable: bool,
        }
        let node = |name, meta: FileMeta, content| Node {
            name,
            mode: meta.mode,
            mtime_secs: meta.mtime_secs,
            mtime_nanos: meta.mtime_nanos,
            content,
        };
        let mut stack = vec![Frame {
            path: path.to_string(),
            children: root.into_iter(),
            nodes: Vec::new(),
            own: None,
            fold: None,
            recordable: false,
        }];
        while let Some(top) = stack.last_mut() {
            match top.children.next() {
                Some((name, Entry::File { meta, file })) => {
                    let rec = std::mem::take(&mut self.files[file]);
                    if rec.failed {
                        top.recordable = false;
                        continue;
                    }
                    let mut cached = false;
                    if let Some((path, stamp)) = rec.cache_key {
                        // Remembered for the next backup only when the file read as big as
                        // its stamp says and was not modified around this backup's start.
                        if stamp.size == rec.size && !stamp.is_racy(self.started) {
                            self.new_cache.insert(path, stamp, rec.chunks.clone());
                            cached = true;
                        }
                    }
                    top.recordable &= cached;
                    top.nodes.push(node(name, meta, NodeContent::File { size: rec.size, chunks: rec.chunks }));
                }
                Some((name, Entry::Symlink { meta, target })) => {
                    top.nodes.push(node(name, meta, NodeContent::Symlink { target }));
                }
                Some((name, Entry::Dir { meta, children, fold })) => {
                    let sub = crate::repo::join(&top.path, &String::from_utf8_lossy(&name));
                    let recordable = fold.is_some();
                    stack.push(Frame {
                        path: sub,
                        children: children.into_iter(),
                        nodes: Vec::new(),
                        own: Some((name, meta)),
                        fold,
                        recordable,
                    });
                }
                None => {
                    let done = stack.pop().expect("the loop holds the top frame");
                    let tree = match done.fold.as_ref().and_then(|f| f.reuse) {
                        Some(tree) => {
                            // Unchanged since the folder cache's backup: the same nodes, so
                            // the same bytes and id, without encoding or hashing them.
                            debug_assert_eq!(
                                Tree { nodes: done.nodes.clone() }.encode().map(|b| self.repo.keys.tree_id(&b)).ok(),
                                Some(tree),
                                "a reused tree is the one its nodes encode to"
                            );
                            self.probe.trees_reused.fetch_add(1, Ordering::Relaxed);
                            tree
                        }
                        None => self.seal_tree(done.nodes, &done.path)?,
                    };
                    let recorded = match done.fold {
                        Some(f) if done.recordable => {
                            self.new_folders.insert(f.path, f.fingerprint, tree);
                            true
                        }
                        _ => false,
                    };
                    match (done.own, stack.last_mut()) {
                        (Some((name, meta)), Some(parent)) => {
                            parent.recordable &= recorded;
                            parent.nodes.push(node(name, meta, NodeContent::Dir { tree }));
                        }
                        _ => return Ok(tree),
                    }
                }
            }
        }
        unreachable!("the root frame returns when it is complete")
    }

    /// Encodes and seals one folder's tree (its nodes in name order) and returns its id.
    fn seal_tree(&mut self, nodes: Vec<Node>, path: &str) -> Result<TreeId> {
        self.probe.trees_encoded.fetch_add(1, Ordering::Relaxed);
        let bytes = Tree { nodes }.encode()?;
        if bytes.len() > blob::MAX_BLOB_RAW as usize {
            // A folder with about a million entries, or a file of millions of chunks: refused
            // here rather than written as a blob no reader accepts.
            return Err(Error::LimitExceeded {
                what: "encoded folder size",
                found: bytes.len() as u64,
                limit: u64::from(blob::MAX_BLOB_RAW),
            }
            .at(Location::SnapshotPath(if path.is_empty() { "/".into() } else { path.to_string() })));
        }
        let id = self.repo.keys.tree_id(&bytes);
        if !self.repo.index.contains(&id.0) && self.seen.insert(id.0) {
            let s = blob::seal(&self.repo.keys, BlobKind::Tree, id.0, &bytes, Some(self.repo.settings.zstd_level));
            self.summary.new_tree_blobs += 1;
            self.summary.new_raw_bytes += u64::from(s.raw_len);
            self.summary.new_stored_bytes += s.bytes.len() as u64;
            for w in self.tree_packs.add(self.repo.store.as_ref(), &self.repo.keys, s)? {
                self.record_pack(w);
            }
        }
        Ok(id)
    }

    pub(super) fn flush_tree_pack(&mut self) -> Result<()> {
        for w in self.tree_packs.flush(self.repo.store.as_ref(), &self.repo.keys)? {
            self.record_pack(w);
        }
        Ok(())
    }
}
