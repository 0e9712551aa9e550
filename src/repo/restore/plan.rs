//! What to restore: the walk of the snapshot's trees and each file's chunks resolved through
//! the index. Which pack ranges to read is planned by `pack::coalesce`.

use std::collections::{HashMap, HashSet};
use std::ffi::OsStr;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

use crate::error::{Error, Result};
use crate::format::blob::BlobKind;
use crate::format::snapshot::{Node, NodeContent, SnapshotRecord, Tree};
use crate::id::{ChunkId, Id};
use crate::pack::{BlobLocation, Wanted};
use crate::repo::walk::{self, Step, TreeWalk};
use crate::repo::Repository;

pub(super) struct PlanNode {
    /// Display path inside the snapshot.
    pub path: String,
    /// Relative local path (exact name bytes).
    pub rel: PathBuf,
    pub node: Node,
}

#[derive(Default)]
pub(super) struct Plan {
    /// Folders, each after its parent (walk order).
    pub dirs: Vec<PlanNode>,
    pub files: Vec<PlanNode>,
    pub links: Vec<PlanNode>,
    /// Paths that cannot be restored: folders whose contents do not read (or nest too deep).
    pub failed: Vec<(String, Error)>,
    /// Every entry in walk order (each folder before what it holds, names in byte order).
    pub order: Vec<Entry>,
    seen: HashSet<PathBuf>,
}

/// One planned entry, by kind and index into the plan's list of that kind.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Entry {
    Dir(usize),
    File(usize),
    Link(usize),
}

impl Plan {
    fn push(&mut self, path: String, rel: PathBuf, node: Node) -> bool {
        if !self.seen.insert(rel.clone()) {
            return false;
        }
        let entry = PlanNode { path, rel, node };
        let (list, kind): (&mut Vec<PlanNode>, fn(usize) -> Entry) = match entry.node.content {
            NodeContent::Dir { .. } => (&mut self.dirs, Entry::Dir),
            NodeContent::File { .. } => (&mut self.files, Entry::File),
            NodeContent::Symlink { .. } => (&mut self.links, Entry::Link),
        };
        self.order.push(kind(list.len()));
        list.push(entry);
        true
    }

    /// The folder (index into `dirs`) that holds `rel`: `Ok(None)` for the target itself.
    ///
    /// # Errors
    /// When the parent is not a planned folder (cannot happen for plans built by the walk, which
    /// lists every folder before its content; kept as a failure rather than a panic).
    pub fn parent_of(dirs: &HashMap<&Path, usize>, rel: &Path) -> Result<Option<usize>> {
        match rel.parent() {
            None => Ok(None),
            Some(p) if p.as_os_str().is_empty() => Ok(None),
            Some(p) => dirs
                .get(p)
                .copied()
                .map(Some)
                .ok_or_else(|| Error::NotFound("its folder is not part of the restore".into())),
        }
    }
}

/// Where one chunk goes: file (index into the plan's files) and offset.
pub(super) struct Target {
    pub file: usize,
    pub offset: u64,
}

/// One chunk to read, and every place it goes.
pub(super) struct Need {
    pub id: Id,
    pub loc: BlobLocation,
    pub targets: Vec<Target>,
}

impl Wanted for Need {
    fn id(&self) -> Id {
        self.id
    }
    fn location(&self) -> &BlobLocation {
        &self.loc
    }
}

impl Repository {
    /// Looks up every chunk of a file; the lengths must add up to the file's size.
    pub(super) fn resolve_chunks(&self, chunks: &[ChunkId], size: u64) -> Result<Vec<BlobLocation>> {
        let mut total = 0u64;
        let mut out = Vec::with_capacity(chunks.len());
        for c in chunks {
            let loc = self
                .index
                .lookup(&c.0)?
                .filter(|l| l.kind == BlobKind::Data)
                .ok_or_else(|| Error::NotFound(format!("chunk {} is in no index (lost data)", c.short())))?;
            total += u64::from(loc.raw_len);
            out.push(loc);
        }
        if total != size {
            return Err(Error::Integrity(format!("chunks add up to {total} bytes, the tree says {size}")));
        }
        Ok(out)
    }

    /// Lists what to restore. Unreadable subtrees become failures, not errors.
    pub(super) fn plan(&self, snapshot: &SnapshotRecord, include: &[String]) -> Result<Plan> {
        let mut plan = Plan::default();
        let root = walk::enter(self, &snapshot.root, "", 0)?;
        if include.is_empty() {
            self.plan_tree("", Path::new(""), root, &mut plan);
            return Ok(plan);
        }
        for inc in include {
            let steps = self.follow_path(&root, inc)?;
            let Some(last) = steps.len().checked_sub(1) else {
                self.plan_tree("", Path::new(""), root.clone(), &mut plan);
                continue;
            };
            // The included path's ancestors come with their own metadata.
            let mut rel = PathBuf::new();
            for (i, step) in steps.into_iter().enumerate() {
                rel.push(OsStr::from_bytes(&step.node.name));
                plan.push(step.path.clone(), rel.clone(), step.node);
                if let (true, Some(tree)) = (i == last, step.tree) {
                    self.plan_tree(&step.path, &rel, tree, &mut plan);
                }
            }
        }
        Ok(plan)
    }

    /// Plans everything below the folder at `prefix` (restored at `prefix_rel`), whose tree is
    /// `tree`. An entry planned already (by an earlier include) is not planned again, nor is
    /// what it holds.
    fn plan_tree(&self, prefix: &str, prefix_rel: &Path, tree: Tree, plan: &mut Plan) {
        // The local paths of the open folders, the innermost last: names are restored as
        // their exact bytes, not as the walk's (lossy) display paths.
        let mut rels = vec![prefix_rel.to_path_buf()];
        // The folder whose tree the walk reads next: an error is about it.
        let mut entered = String::new();
        let mut walk = TreeWalk::from_tree(self, tree, prefix);
        while let Some(step) = walk.next() {
            match step {
                Ok(Step::Node { path, node }) => {
                    let rel = rels.last().expect("the start stays open").join(OsStr::from_bytes(&node.name));
                    let dir = matches!(node.content, NodeContent::Dir { .. });
                    if !plan.push(path.clone(), rel.clone(), node) {
                        walk.skip_subtree();
                    } else if dir {
                        rels.push(rel);
                        entered = path;
                    }
                }
                Ok(Step::Leave { .. }) => {
                    rels.pop();
                }
                // The folder itself is restored; what is in it fails with the reason (which
                // the failure's path already places).
                Err(e) => plan.failed.push((std::mem::take(&mut entered), walk::unplaced(e))),
            }
        }
    }
}
