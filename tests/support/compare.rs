//! Compares two folder trees: names, kinds, file bytes, permission bits, file mtimes and
//! symlink targets.

#![allow(dead_code)]

use std::fs;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::Path;

/// Panics with the first difference between `a` and `b`.
pub fn assert_same_tree(a: &Path, b: &Path) {
    let mut names_a: Vec<_> = fs::read_dir(a).unwrap().map(|e| e.unwrap().file_name()).collect();
    let mut names_b: Vec<_> = fs::read_dir(b).unwrap().map(|e| e.unwrap().file_name()).collect();
    names_a.sort();
    names_b.sort();
    assert_eq!(names_a, names_b, "entries of {} and {}", a.display(), b.display());
    for n in names_a {
        let (pa, pb) = (a.join(&n), b.join(&n));
        let (ma, mb) = (fs::symlink_metadata(&pa).unwrap(), fs::symlink_metadata(&pb).unwrap());
        assert_eq!(ma.file_type(), mb.file_type(), "type of {}", pb.display());
        if ma.file_type().is_symlink() {
            assert_eq!(fs::read_link(&pa).unwrap(), fs::read_link(&pb).unwrap(), "target of {}", pb.display());
            assert_eq!((ma.mtime(), ma.mtime_nsec()), (mb.mtime(), mb.mtime_nsec()), "mtime of link {}", pb.display());
            continue;
        }
        assert_eq!(ma.permissions().mode() & 0o7777, mb.permissions().mode() & 0o7777, "mode of {}", pb.display());
        assert_eq!((ma.mtime(), ma.mtime_nsec()), (mb.mtime(), mb.mtime_nsec()), "mtime of {}", pb.display());
        if ma.is_dir() {
            assert_same_tree(&pa, &pb);
        } else {
            assert!(fs::read(&pa).unwrap() == fs::read(&pb).unwrap(), "content of {}", pb.display());
        }
    }
}
