//! Every parser of outside input, fed what an attacker or a damaged disk
//! gives (property tests: they run on stable Rust in `make test`):
//! URIs from callers, names from either side, records from the metadata
//! store. None may panic, and what they accept must be safe.

use proptest::prelude::*;

use super::fake::{Fake, APP};
use super::place::{conflict_copy_name, NAME_MAX};
use super::records::{EvictingRecord, FileStateRecord, PartialRecord, SyncedRecord};
use super::uri::{check_relative_path, parse_uri_for, uri_of};
use super::{Engine, Tick};

/// Strings near the URIs callers send: the real prefixes, then anything.
fn uri_like() -> impl Strategy<Value = String> {
    let prefix = prop_oneof![
        Just(format!("file://{APP}/data/storage/el2/cloud/")),
        Just("file://media/Photo/".to_string()),
        Just("file://other.app/data/storage/el2/cloud/".to_string()),
        Just("file://".to_string()),
        Just(String::new()),
    ];
    let tail = prop_oneof![
        "[a-zA-Z0-9 ./%_~-]{0,40}",
        "(%[0-9a-fA-F]{2}|%|\\.\\.|/|[a-z]){0,20}",
        any::<String>(),
    ];
    (prefix, tail).prop_map(|(p, t)| format!("{p}{t}"))
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(4000))]

    #[test]
    fn a_uri_either_parses_to_a_path_inside_its_folder_or_is_refused(uri in uri_like(), manager: bool, gallery: bool) {
        if let Ok(file) = parse_uri_for(&uri, APP, manager, gallery) {
            prop_assert!(check_relative_path(&file.path).is_ok(), "{uri} -> {file:?}");
            prop_assert!(!file.path.split('/').any(|p| p == ".." || p == "." || p.is_empty()));
            prop_assert!(file.bundle == APP || manager || file.bundle == "media", "{uri} -> {file:?}");
            // The URI the engine gives back names the same file.
            let again = parse_uri_for(&uri_of(&file), APP, manager, gallery || file.bundle == "media");
            prop_assert_eq!(again.as_ref(), Ok(&file));
        }
    }

    #[test]
    fn records_of_any_bytes_never_panic(bytes: Vec<u8>) {
        let _ = serde_json::from_slice::<SyncedRecord>(&bytes);
        let _ = serde_json::from_slice::<PartialRecord>(&bytes);
        let _ = serde_json::from_slice::<FileStateRecord>(&bytes);
        let _ = serde_json::from_slice::<EvictingRecord>(&bytes);
    }

    #[test]
    fn a_conflict_copy_name_always_fits_and_differs(name in "[^/\u{0}]{1,64}", repeat in 1usize..5, dir in "([a-z]{1,8}/){0,2}") {
        let mut stem = name.repeat(repeat);
        while stem.len() > NAME_MAX {
            stem.pop();
        }
        let path = format!("{dir}{stem}");
        let fake = Fake::new();
        let copy = conflict_copy_name(&fake, APP, &path);
        prop_assert_ne!(&copy, &path);
        prop_assert!(copy.rsplit('/').next().unwrap().len() <= NAME_MAX, "{} bytes", copy.len());
        prop_assert!(copy.starts_with(&dir));
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(300))]

    /// A metadata store holding anything (damaged values under real keys,
    /// odd keys) never makes the engine panic or delete: a whole sync runs.
    #[test]
    fn a_sync_over_a_damaged_store_never_panics_or_deletes(
        values in proptest::collection::vec((0usize..6, "[a-z/.]{0,12}", any::<Vec<u8>>()), 0..12),
    ) {
        let mut e = Engine::new(Fake::new());
        e.platform.put_local("cloud/a.txt", b"here");
        e.platform.put_cloud("b.txt", b"there");
        {
            let mut s = e.platform.0.borrow_mut();
            for (kind, path, bytes) in values {
                let kind = ["synced", "partial", "syncpartial", "filestate", "evicting", "run"][kind];
                s.meta.insert(format!("{kind}/{APP}/{path}"), bytes);
            }
        }
        let _ = e.init();
        let id = e.syncs.create_file_sync(&e.platform, None).unwrap();
        e.syncs.start(&e.platform, id, false).unwrap();
        for _ in 0..10_000 {
            if e.tick() == Tick::Idle {
                break;
            }
        }
        prop_assert_eq!(e.platform.local("cloud/a.txt"), Some(b"here".to_vec()));
        prop_assert_eq!(e.platform.cloud("b.txt"), Some(b"there".to_vec()));
    }
}
