//! The committed test vectors are current, and vault-protocol.md prints them.

#[test]
fn vectors_are_current_and_printed_in_the_spec() {
    let generated = packvault_vault::vectors::generate();
    let file = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/vectors/protocol.txt");
    if std::env::var_os("BLESS").is_some() {
        std::fs::write(file, &generated).unwrap();
    }
    let committed = std::fs::read_to_string(file).unwrap();
    assert_eq!(committed, generated, "stale vectors: BLESS=1 cargo test -p packvault-vault vectors");
    let spec = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../vault-protocol.md")).unwrap();
    for line in generated.lines() {
        assert!(spec.contains(line), "vault-protocol.md §9 lacks the vector line {line}");
    }
}
