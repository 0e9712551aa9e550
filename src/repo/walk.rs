//! Walking a snapshot's folders: the one walker every reader of trees goes through, and the
//! one place the nesting limit is applied.
//!
//! Trees come from the repository, so a snapshot can nest folders as deep as whoever wrote it
//! liked; readers that recurse would overflow their stack. The limit of format-spec.md §7.3
//! ([`MAX_TREE_DEPTH`](crate::format::snapshot::MAX_TREE_DEPTH)) is checked in
//! [`enter`], before a folder's tree is read, and every error says which folder (its path
//! inside the snapshot) it is about. [`TreeWalk`] and [`Repository::follow_path`] both go
//! through it.
//!
//! [`TreeWalk`] is an iterator, not a visitor callback, so callers keep their own control
//! flow: `?` stops at the first folder that cannot be read, or the caller records the error
//! and goes on (the walk then skips that folder's contents), and
//! [`TreeWalk::skip_subtree`] leaves out a folder the caller has already seen (a shared tree
//! whose totals it knows). It walks depth first, pre-order, in name order (the order trees
//! store their entries in), iteratively: memory holds one tree per open folder, never the
//! whole snapshot, and nodes are moved out of their tree, not copied.
//!
//! The walker reads trees through [`TreeSource`], which [`Repository`] implements; the unit
//! tests give it trees from a map, without a repository.

use crate::error::{Error, Location, Result, ResultExt};
use crate::format::snapshot::{check_tree_level, Node, NodeContent, SnapshotRecord, Tree, FOLDER_NESTING};
use crate::id::TreeId;
use crate::repo::Repository;

/// Where a walk reads trees from.
pub(crate) trait TreeSource {
    /// Reads and decodes the tree `id`.
    fn tree(&self, id: &TreeId) -> Result<Tree>;
}

impl TreeSource for Repository {
    fn tree(&self, id: &TreeId) -> Result<Tree> {
        self.load_tree(id)
    }
}

/// The place of a folder in errors: its path inside the snapshot, `/` for the root.
fn location(path: &str) -> Location {
    Location::SnapshotPath(if path.is_empty() { "/".into() } else { path.to_string() })
}

/// The number of components of a `/`-separated path inside a snapshot: the level of the
/// folder's tree (the root tree is level 0). Names hold no `/` (format-spec.md §5.8).
pub(crate) fn level_of(path: &str) -> usize {
    path.split('/').filter(|p| !p.is_empty()).count()
}

/// Reads the tree of the folder at `path`, whose tree lies at `level`: first the nesting
/// limit, then the read. Errors name the folder.
///
/// # Errors
/// [`Error::LimitExceeded`](crate::Error::LimitExceeded) past the limit; the source's errors.
pub(crate) fn enter<S: TreeSource + ?Sized>(source: &S, id: &TreeId, path: &str, level: usize) -> Result<Tree> {
    check_tree_level(level).at(|| location(path))?;
    source.tree(id).at(|| location(path))
}

/// The error of a walk without the folder's path that [`enter`] put around it, for callers
/// that name the folder themselves (a check problem's affected paths, a restore's failed
/// list). Any other error is returned as it is.
pub(crate) fn unplaced(e: Error) -> Error {
    match e {
        Error::At { at: Location::SnapshotPath(_), error } => *error,
        e => e,
    }
}

/// True when `e` is [`enter`]'s refusal of a folder nested past the limit, not a tree that
/// did not read: the folder's contents may be sound, they are only out of reach.
pub(crate) fn is_too_deep(e: &Error) -> bool {
    match e {
        Error::At { error, .. } => is_too_deep(error),
        Error::LimitExceeded { what, .. } => *what == FOLDER_NESTING,
        _ => false,
    }
}

/// What a [`TreeWalk`] yields.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Step {
    /// An entry of a folder: its path inside the snapshot and its node. A folder's contents
    /// follow it (unless [skipped](TreeWalk::skip_subtree)), then its [`Step::Leave`].
    Node {
        /// `/`-separated, without a leading `/`.
        path: String,
        /// The entry.
        node: Node,
    },
    /// Everything below the folder at `path` was yielded, or could not be read (the error came
    /// just before). Not given for the folder the walk started in, nor for a skipped one.
    Leave {
        /// The folder's path.
        path: String,
    },
}

/// An open folder.
struct Frame {
    path: String,
    level: usize,
    nodes: std::vec::IntoIter<Node>,
    /// False for the folder the walk started in (no [`Step::Leave`] for it).
    leave: bool,
}

/// A folder to enter at the next step, unless skipped.
struct Pending {
    path: String,
    level: usize,
    tree: TreeId,
    leave: bool,
}

/// Depth-first, pre-order, name-ordered walk below one folder of a snapshot (see the module
/// documentation). Yields `Err` for a folder whose tree cannot be read or lies too deep, then
/// goes on with the next entry if asked for more.
pub(crate) struct TreeWalk<'s, S: TreeSource + ?Sized = Repository> {
    source: &'s S,
    /// Open folders, the deepest last.
    frames: Vec<Frame>,
    /// The folder just yielded (or the start), entered at the next step.
    pending: Option<Pending>,
    /// The folder whose read just failed: its [`Step::Leave`] comes next.
    failed: Option<String>,
}

impl<'s, S: TreeSource + ?Sized> TreeWalk<'s, S> {
    /// A walk below the tree `root` of the folder at `path` ("" for a snapshot's root); the
    /// tree is read at the first step.
    pub(crate) fn new(source: &'s S, root: TreeId, path: &str) -> Self {
        let pending = Pending { path: path.to_string(), level: level_of(path), tree: root, leave: false };
        TreeWalk { source, frames: Vec::new(), pending: Some(pending), failed: None }
    }

    /// A walk below a folder whose tree is already read.
    pub(crate) fn from_tree(source: &'s S, tree: Tree, path: &str) -> Self {
        let frame =
            Frame { path: path.to_string(), level: level_of(path), nodes: tree.nodes.into_iter(), leave: false };
        TreeWalk { source, frames: vec![frame], pending: None, failed: None }
    }

    /// Leaves out the contents of the folder the last [`Step::Node`] gave (no `Leave` for it
    /// either). Does nothing after a node that is not a folder.
    pub(crate) fn skip_subtree(&mut self) {
        self.pending = None;
    }
}

impl<S: TreeSource + ?Sized> Iterator for TreeWalk<'_, S> {
    type Item = Result<Step>;

    fn next(&mut self) -> Option<Result<Step>> {
        if let Some(path) = self.failed.take() {
            return Some(Ok(Step::Leave { path }));
        }
        if let Some(p) = self.pending.take() {
            match enter(self.source, &p.tree, &p.path, p.level) {
                Ok(tree) => {
                    let nodes = tree.nodes.into_iter();
                    self.frames.push(Frame { path: p.path, level: p.level, nodes, leave: p.leave });
                }
                Err(e) => {
                    if p.leave {
                        self.failed = Some(p.path);
                    }
                    return Some(Err(e));
                }
            }
        }
        loop {
            let frame = self.frames.last_mut()?;
            if let Some(node) = frame.nodes.next() {
                let path = join(&frame.path, &node.name_lossy());
                if let NodeContent::Dir { tree } = &node.content {
                    let level = frame.level + 1;
                    self.pending = Some(Pending { path: path.clone(), level, tree: *tree, leave: true });
                }
                return Some(Ok(Step::Node { path, node }));
            }
            let done = self.frames.pop().expect("a frame");
            if done.leave {
                return Some(Ok(Step::Leave { path: done.path }));
            }
        }
    }
}

/// One component of a path inside a snapshot (see [`Repository::follow_path`]).
pub(crate) struct PathStep {
    /// The path so far.
    pub path: String,
    /// Its node.
    pub node: Node,
    /// The node's tree, when it is a folder.
    pub tree: Option<Tree>,
}

impl Repository {
    /// A walk below the tree `root` of the folder at `path` ("" for a snapshot's root).
    pub(crate) fn walk(&self, root: TreeId, path: &str) -> TreeWalk<'_> {
        TreeWalk::new(self, root, path)
    }

    /// The nodes under `path` (a `/`-separated path inside the snapshot, "" for the root),
    /// recursively when `recursive`, as (path, node) pairs: depth first, each folder's entries
    /// in name order, a folder before its contents.
    ///
    /// # Errors
    /// [`Error::NotFound`](crate::Error::NotFound) when `path` does not exist; tree read
    /// errors and [`Error::LimitExceeded`](crate::Error::LimitExceeded) for folders nested
    /// past format-spec.md §7.3, naming the folder.
    pub fn list(&self, snapshot: &SnapshotRecord, path: &str, recursive: bool) -> Result<Vec<(String, Node)>> {
        let mut out = Vec::new();
        let root = enter(self, &snapshot.root, "", 0)?;
        let (prefix, tree) = match self.follow_path(&root, path)?.pop() {
            None => (String::new(), root),
            Some(PathStep { path, node, tree: Some(tree) }) => {
                out.push((path.clone(), node));
                (path, tree)
            }
            Some(PathStep { path, node, tree: None }) => return Ok(vec![(path, node)]),
        };
        let mut walk = TreeWalk::from_tree(self, tree, &prefix);
        while let Some(step) = walk.next() {
            if let Step::Node { path, node } = step? {
                if !recursive {
                    walk.skip_subtree();
                }
                out.push((path, node));
            }
        }
        Ok(out)
    }

    /// Follows `path` (`/`-separated; empty and `.` components skipped) down from `root`: one
    /// step per component, each folder's tree loaded; no steps for the root itself.
    pub(crate) fn follow_path(&self, root: &Tree, path: &str) -> Result<Vec<PathStep>> {
        let mut steps: Vec<PathStep> = Vec::new();
        for part in path.split('/').filter(|p| !p.is_empty() && *p != ".") {
            let (tree, so_far) = match steps.last() {
                None => (root, ""),
                Some(PathStep { tree: Some(t), path: p, .. }) => (t, p.as_str()),
                Some(PathStep { path: p, .. }) => {
                    return Err(crate::Error::NotFound(format!("{path} in the snapshot ({p} is not a folder)")))
                }
            };
            let here = join(so_far, part);
            let node = tree
                .nodes
                .iter()
                .find(|n| n.name == part.as_bytes())
                .cloned()
                .ok_or_else(|| crate::Error::NotFound(format!("{here} in the snapshot")))?;
            let tree = match &node.content {
                NodeContent::Dir { tree } => Some(enter(self, tree, &here, steps.len() + 1)?),
                _ => None,
            };
            steps.push(PathStep { path: here, node, tree });
        }
        Ok(steps)
    }
}

/// `prefix/name`, or `name` at the root.
pub(crate) fn join(prefix: &str, name: &str) -> String {
    if prefix.is_empty() {
        name.to_string()
    } else {
        format!("{prefix}/{name}")
    }
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use super::*;
    use crate::format::snapshot::MAX_TREE_DEPTH;
    use crate::id::Id;
    use crate::{Error, ErrorKind};

    /// Trees by id, with a count of reads.
    #[derive(Default)]
    struct Trees {
        trees: HashMap<TreeId, Tree>,
        reads: std::cell::Cell<usize>,
    }

    impl TreeSource for Trees {
        fn tree(&self, id: &TreeId) -> Result<Tree> {
            self.reads.set(self.reads.get() + 1);
            self.trees.get(id).cloned().ok_or_else(|| Error::NotFound(format!("tree {}", id.short())))
        }
    }

    impl Trees {
        /// Stores a tree of `nodes` (sorted by name, as trees are) under a fresh id.
        fn add(&mut self, mut nodes: Vec<Node>) -> TreeId {
            nodes.sort_by(|a, b| a.name.cmp(&b.name));
            let id = TreeId(Id::hash_of(&(self.trees.len() as u64).to_le_bytes()));
            self.trees.insert(id, Tree { nodes });
            id
        }
    }

    fn node(name: &str, content: NodeContent) -> Node {
        Node { name: name.as_bytes().to_vec(), mode: 0o644, mtime_secs: 0, mtime_nanos: 0, content }
    }

    fn file(name: &str) -> Node {
        node(name, NodeContent::File { size: 1, chunks: Vec::new() })
    }

    fn dir(name: &str, tree: TreeId) -> Node {
        node(name, NodeContent::Dir { tree })
    }

    /// Each step as text: `path` for a node, `<path` for leaving a folder, `!path` for an error
    /// naming a folder.
    fn trace<S: TreeSource>(walk: TreeWalk<'_, S>) -> Vec<String> {
        walk.map(|s| match s {
            Ok(Step::Node { path, .. }) => path,
            Ok(Step::Leave { path }) => format!("<{path}"),
            Err(Error::At { at: Location::SnapshotPath(p), .. }) => format!("!{p}"),
            Err(e) => panic!("an error that names no folder: {e}"),
        })
        .collect()
    }

    /// root: b.txt, a/ (z.txt, m/ (x)), c/ (empty)
    fn sample() -> (Trees, TreeId) {
        let mut t = Trees::default();
        let m = t.add(vec![file("x")]);
        let a = t.add(vec![file("z.txt"), dir("m", m)]);
        let c = t.add(vec![]);
        let root = t.add(vec![file("b.txt"), dir("a", a), dir("c", c)]);
        (t, root)
    }

    #[test]
    fn walks_depth_first_in_name_order_with_leave_events() {
        let (t, root) = sample();
        assert_eq!(
            trace(TreeWalk::new(&t, root, "")),
            ["a", "a/m", "a/m/x", "<a/m", "a/z.txt", "<a", "b.txt", "c", "<c"]
        );
        // Started below a folder: paths carry its prefix; no Leave for the start.
        let a = match &t.trees[&root].nodes[0].content {
            NodeContent::Dir { tree } => *tree,
            other => panic!("{other:?}"),
        };
        assert_eq!(trace(TreeWalk::new(&t, a, "a")), ["a/m", "a/m/x", "<a/m", "a/z.txt"]);
    }

    #[test]
    fn a_skipped_folder_is_not_read() {
        let (t, root) = sample();
        let mut walk = TreeWalk::new(&t, root, "");
        let mut seen = Vec::new();
        while let Some(step) = walk.next() {
            if let Step::Node { path, .. } = step.unwrap() {
                if path == "a" {
                    walk.skip_subtree();
                }
                seen.push(path);
            }
        }
        assert_eq!(seen, ["a", "b.txt", "c"]);
        assert_eq!(t.reads.get(), 2, "the root and c only");
    }

    #[test]
    fn an_unreadable_folder_is_an_error_naming_it_and_the_walk_goes_on() {
        let (mut t, _) = sample();
        let lost = TreeId(Id([0xee; 32]));
        let root = t.add(vec![dir("gone", lost), file("kept")]);
        assert_eq!(trace(TreeWalk::new(&t, root, "")), ["gone", "!gone", "<gone", "kept"]);
        let mut walk = TreeWalk::new(&t, root, "");
        walk.next();
        let e = walk.next().unwrap().unwrap_err();
        assert_eq!(e.kind(), ErrorKind::NotFound);
        assert!(e.to_string().starts_with("gone: "), "{e}");
        // An unreadable start names the root.
        assert_eq!(trace(TreeWalk::new(&t, lost, "")), ["!/"]);
    }

    #[test]
    fn folders_past_the_limit_are_refused_before_they_are_read() {
        // d/d/…/d, MAX_TREE_DEPTH + 2 folders deep: the tree of the folder at level
        // MAX_TREE_DEPTH + 1 is the first one refused.
        let mut t = Trees::default();
        let mut tree = t.add(vec![file("leaf")]);
        for _ in 0..=MAX_TREE_DEPTH {
            tree = t.add(vec![dir("d", tree)]);
        }
        let mut walk = TreeWalk::new(&t, tree, "");
        let mut nodes = 0;
        let err = loop {
            match walk.next().expect("the walk reaches the limit") {
                Ok(Step::Node { .. }) => nodes += 1,
                Ok(Step::Leave { .. }) => panic!("no folder is done before the limit"),
                Err(e) => break e,
            }
        };
        assert_eq!(nodes, MAX_TREE_DEPTH + 1);
        assert_eq!(err.kind(), ErrorKind::LimitExceeded);
        let deepest = vec!["d"; MAX_TREE_DEPTH + 1].join("/");
        assert_eq!(
            err.to_string(),
            format!("{deepest}: folder nesting is {}, above the limit of {MAX_TREE_DEPTH}", MAX_TREE_DEPTH + 1)
        );
        assert_eq!(t.reads.get(), MAX_TREE_DEPTH + 1, "the refused tree is not read");
        // The walk goes on: every folder is left, innermost first, and nothing else comes.
        let rest: Vec<Step> = walk.map(Result::unwrap).collect();
        assert_eq!(rest.len(), MAX_TREE_DEPTH + 1);
        assert_eq!(rest[0], Step::Leave { path: deepest });
        assert_eq!(rest.last(), Some(&Step::Leave { path: "d".into() }));
    }

    #[test]
    fn the_depth_refusal_is_told_from_a_tree_that_does_not_read() {
        let mut t = Trees::default();
        let leaf = t.add(vec![]);
        let past = vec!["d"; MAX_TREE_DEPTH + 1].join("/");
        let deep = TreeWalk::new(&t, leaf, &past).next().unwrap().unwrap_err();
        assert!(is_too_deep(&deep) && is_too_deep(&deep.duplicate().at(Location::SnapshotPath("x".into()))));
        let lost = TreeWalk::new(&t, TreeId(Id([0xee; 32])), "a").next().unwrap().unwrap_err();
        assert!(!is_too_deep(&lost));
        let big = Error::LimitExceeded { what: "blob size", found: 2, limit: 1 };
        assert!(!is_too_deep(&big));
        // unplaced takes off the folder's path, and nothing else.
        assert_eq!(
            unplaced(deep).to_string(),
            format!("folder nesting is {}, above the limit of {MAX_TREE_DEPTH}", MAX_TREE_DEPTH + 1)
        );
        assert_eq!(unplaced(lost).to_string(), format!("not found: tree {}", TreeId(Id([0xee; 32])).short()));
        let elsewhere = Error::NotFound("x".into()).at(Location::Blob(Id([1; 32])));
        assert!(matches!(unplaced(elsewhere), Error::At { at: Location::Blob(_), .. }));
    }

    #[test]
    fn the_limit_counts_from_where_the_walk_starts() {
        let mut t = Trees::default();
        let leaf = t.add(vec![file("x")]);
        let at_limit = vec!["d"; MAX_TREE_DEPTH].join("/");
        assert_eq!(trace(TreeWalk::new(&t, leaf, &at_limit)), [format!("{at_limit}/x")]);
        let past = format!("{at_limit}/d");
        assert_eq!(trace(TreeWalk::new(&t, leaf, &past)), [format!("!{past}")]);
        assert_eq!(level_of("a//b/"), 2);
        assert_eq!(level_of(""), 0);
    }
}
