//! Tree blob plaintexts: decode → encode → decode is the identity; accepted names are safe
//! to join to a restore target.
#![no_main]

use libfuzzer_sys::fuzz_target;
use packvault::format::snapshot::{valid_name, Tree};

fuzz_target!(|data: &[u8]| {
    if let Ok(tree) = Tree::decode(data) {
        for n in &tree.nodes {
            assert!(valid_name(&n.name));
            assert!(n.name != b"." && n.name != b".." && !n.name.contains(&b'/'));
        }
        let again = tree.encode().expect("an accepted tree re-encodes");
        assert_eq!(Tree::decode(&again).unwrap(), tree);
    }
});
