//! The directory on its own: records in and out, admin commands, and replaying changes.

use std::collections::BTreeSet;

use proptest::prelude::*;

use super::*;
use crate::crypto::PublicKey;
use crate::rendezvous::messages::ErrorCode;

fn tenant(name: &str) -> TenantName {
    name.parse().unwrap()
}

fn path(name: &str) -> ServiceName {
    ServiceName::parse(name).unwrap()
}

/// One tenant `acme` with master token `M`.
fn acme() -> Directory {
    let records = Records {
        tenants: vec![TenantRecord {
            name: tenant("acme"),
            master: TokenHash::of("M"),
            limits: Default::default(),
        }],
        paths: Vec::new(),
        attachments: Vec::new(),
        daemons: Vec::new(),
    };
    Directory::from_records(records).unwrap()
}

/// The registry as `run_admin` sees it: nobody exposes anything, and the daemons with keys
/// of a first byte below 8 are registered in the tenant.
fn live() -> Live<'static> {
    Live {
        exposed_by: &|_| None,
        registered: &|k| k.as_bytes()[0] < 8,
        uses: &|k| (k.as_bytes()[0] < 8).then(Vec::new),
        connections: &|_| 0,
        relay_bytes_per_sec: 1000,
        online: &Vec::new,
        failed: &Vec::new,
    }
}

/// Runs `command` as acme's master with tokens t1, t2, ... and applies its changes.
fn admin(
    dir: &mut Directory,
    next: &mut u32,
    command: AdminCommand,
) -> Result<AdminAnswer, ErrorCode> {
    let mut token = || {
        *next += 1;
        format!("t{next}")
    };
    let (answer, changes) =
        run_admin(dir, &tenant("acme"), command, &mut token, &live()).map_err(|(c, _)| c)?;
    for change in &changes {
        dir.apply(change);
    }
    Ok(answer)
}

#[test]
fn tenant_names_are_checked() {
    for good in ["acme", "a", "team-2_b", &"x".repeat(MAX_TENANT_NAME_LEN)] {
        assert!(good.parse::<TenantName>().is_ok(), "{good}");
    }
    for bad in [
        "",
        "Acme",
        "a b",
        "é",
        "a/b",
        &"x".repeat(MAX_TENANT_NAME_LEN + 1),
    ] {
        assert!(bad.parse::<TenantName>().is_err(), "{bad}");
    }
}

#[test]
fn created_tokens_resolve_and_redeemed_or_deleted_ones_do_not() {
    let (mut dir, mut n) = (acme(), 0);
    let created = admin(
        &mut dir,
        &mut n,
        AdminCommand::Create {
            name: path("/ssh"),
            fixed: false,
            max_connections: None,
        },
    );
    let Ok(AdminAnswer::Created {
        server_token,
        client_token,
        ..
    }) = created
    else {
        panic!("{created:?}")
    };
    assert_eq!(
        dir.credential(&server_token),
        Some(&Credential::Server(tenant("acme"), path("/ssh")))
    );
    assert_eq!(
        dir.credential(&client_token),
        Some(&Credential::Client(tenant("acme"), path("/ssh")))
    );
    assert_eq!(
        dir.credential("M"),
        Some(&Credential::Master(tenant("acme")))
    );
    let again = admin(
        &mut dir,
        &mut n,
        AdminCommand::Create {
            name: path("/ssh"),
            fixed: true,
            max_connections: None,
        },
    );
    assert_eq!(again, Err(ErrorCode::NameTaken));

    let redeemed = admin(
        &mut dir,
        &mut n,
        AdminCommand::Redeem {
            name: path("/ssh"),
            role: TokenRole::Client,
        },
    )
    .unwrap();
    let AdminAnswer::Redeemed { token, .. } = redeemed else {
        panic!("{redeemed:?}")
    };
    assert_eq!(
        dir.credential(&client_token),
        None,
        "the old client token still works"
    );
    assert!(dir.credential(&token).is_some());
    assert!(
        dir.credential(&server_token).is_some(),
        "the server token changed too"
    );

    admin(
        &mut dir,
        &mut n,
        AdminCommand::Delete { name: path("/ssh") },
    )
    .unwrap();
    assert_eq!(dir.credential(&token), None);
    assert_eq!(dir.credential(&server_token), None);
    assert_eq!(
        admin(
            &mut dir,
            &mut n,
            AdminCommand::Delete { name: path("/ssh") }
        ),
        Err(ErrorCode::UnknownService)
    );
}

#[test]
fn a_tree_comes_in_pages_that_cover_every_path_once() {
    let (mut dir, mut n) = (acme(), 0);
    for i in 0..(3 * MAX_TREE_PAGE + 1) {
        let name = path(&format!("/p{i:02}"));
        admin(
            &mut dir,
            &mut n,
            AdminCommand::Create {
                name,
                fixed: false,
                max_connections: None,
            },
        )
        .unwrap();
    }
    let (mut seen, mut after, mut pages) = (Vec::new(), None, 0);
    loop {
        let page = admin(&mut dir, &mut n, AdminCommand::Tree { after }).unwrap();
        let AdminAnswer::Tree { paths, more, .. } = page else {
            panic!("{page:?}")
        };
        pages += 1;
        assert!(paths.len() <= MAX_TREE_PAGE);
        after = paths.last().map(|p| p.name.clone());
        seen.extend(paths.into_iter().map(|p| p.name));
        if !more {
            break;
        }
    }
    assert_eq!(pages, 4);
    let all: Vec<ServiceName> = dir
        .paths_of(&tenant("acme"))
        .map(|p| p.name.clone())
        .collect();
    assert_eq!(seen, all);
}

#[test]
fn inconsistent_records_are_refused() {
    let t = TenantRecord {
        name: tenant("acme"),
        master: TokenHash::of("M"),
        limits: Default::default(),
    };
    let p = PathRecord {
        tenant: tenant("acme"),
        name: path("/ssh"),
        server: TokenHash::of("S"),
        client: TokenHash::of("C"),
        fixed: false,
        clients: BTreeSet::new(),
        max_connections: None,
    };
    let load = |tenants: Vec<TenantRecord>, paths: Vec<PathRecord>| {
        Directory::from_records(Records {
            tenants,
            paths,
            attachments: Vec::new(),
            daemons: Vec::new(),
        })
    };
    assert!(load(vec![t.clone()], vec![p.clone()]).is_ok());
    assert_eq!(
        load(vec![], vec![p.clone()]),
        Err(DirectoryError::UnknownTenant(tenant("acme")))
    );
    let mut same = p.clone();
    same.client = same.server;
    assert_eq!(
        load(vec![t.clone()], vec![same]),
        Err(DirectoryError::DuplicateToken)
    );
    let mut master = p.clone();
    master.server = TokenHash::of("M");
    assert_eq!(
        load(vec![t.clone()], vec![master]),
        Err(DirectoryError::DuplicateToken)
    );
    assert!(matches!(
        load(vec![t.clone(), t.clone()], vec![]),
        Err(DirectoryError::Duplicate(_))
    ));
    assert!(matches!(
        load(vec![t.clone()], vec![p.clone(), p.clone()]),
        Err(DirectoryError::Duplicate(_))
    ));
    let mut crowded = p;
    crowded.fixed = true;
    crowded.clients = (0..=MAX_FIXED_CLIENTS as u8)
        .map(|i| PublicKey::from_bytes([i; 32]))
        .collect();
    assert_eq!(load(vec![t], vec![crowded]), Err(DirectoryError::TooMany));
}

fn daemon_name() -> impl Strategy<Value = DaemonName> {
    (0..4u8).prop_map(|i| format!("d{i}").parse().unwrap())
}

/// A daemon binding its key, as the server does at a first registration.
fn bind() -> impl Strategy<Value = (DaemonName, u8)> {
    (daemon_name(), 0..10u8)
}

fn command() -> impl Strategy<Value = AdminCommand> {
    let name = (0..6u8).prop_map(|i| path(&format!("/p{i}")));
    prop_oneof![
        (name.clone(), any::<bool>(), proptest::option::of(1..4u32)).prop_map(
            |(name, fixed, max_connections)| AdminCommand::Create {
                name,
                fixed,
                max_connections
            }
        ),
        name.clone().prop_map(|name| AdminCommand::Delete { name }),
        (name.clone(), any::<bool>()).prop_map(|(name, s)| AdminCommand::Redeem {
            name,
            role: if s {
                TokenRole::Server
            } else {
                TokenRole::Client
            },
        }),
        name.clone().prop_map(|name| AdminCommand::Reload { name }),
        // Keys 0..10: the first 8 are registered (see `live`).
        (name.clone(), 0..10u8, any::<bool>()).prop_map(|(name, k, expose)| {
            AdminCommand::Rattach {
                name,
                daemon: PublicKey::from_bytes([k; 32]).into(),
                attach: if expose {
                    Attachment::Expose {
                        target: "127.0.0.1:22".into(),
                    }
                } else {
                    Attachment::Listen {
                        addr: "127.0.0.1:2222".parse().unwrap(),
                    }
                },
            }
        }),
        (name.clone(), 0..10u8).prop_map(|(name, k)| AdminCommand::Rdetach {
            name,
            daemon: PublicKey::from_bytes([k; 32]).into(),
        }),
        daemon_name().prop_map(|name| AdminCommand::Register { name }),
        daemon_name().prop_map(|name| AdminCommand::Unregister { name }),
        daemon_name().prop_map(|name| AdminCommand::RedeemDaemon { name }),
        (name, daemon_name()).prop_map(|(name, daemon)| AdminCommand::Rattach {
            name,
            daemon: DaemonRef::Name(daemon),
            attach: Attachment::Listen {
                addr: "127.0.0.1:2222".parse().unwrap(),
            },
        }),
    ]
}

#[test]
fn attachments_need_their_path_and_go_with_it() {
    let (mut dir, mut n) = (acme(), 0);
    let daemon = PublicKey::from_bytes([1; 32]);
    let stranger = PublicKey::from_bytes([9; 32]);
    let listen = Attachment::Listen {
        addr: "127.0.0.1:2222".parse().unwrap(),
    };
    let rattach = |daemon: PublicKey| AdminCommand::Rattach {
        name: path("/ssh"),
        daemon: daemon.into(),
        attach: listen.clone(),
    };
    assert_eq!(
        admin(&mut dir, &mut n, rattach(daemon)),
        Err(ErrorCode::UnknownService),
        "no such path"
    );
    let create = AdminCommand::Create {
        name: path("/ssh"),
        fixed: true,
        max_connections: None,
    };
    admin(&mut dir, &mut n, create).unwrap();
    assert_eq!(
        admin(&mut dir, &mut n, rattach(stranger)),
        Err(ErrorCode::UnknownService),
        "not registered in the tenant"
    );
    admin(&mut dir, &mut n, rattach(daemon)).unwrap();
    // A client attached to a fixed path is pinned.
    let acme = tenant("acme");
    assert!(
        dir.path(&acme, &path("/ssh"))
            .unwrap()
            .clients
            .contains(&daemon)
    );
    // Stored and loaded back; an attachment whose path is missing is refused.
    let records = dir.records();
    assert_eq!(records.attachments.len(), 1);
    assert_eq!(Directory::from_records(records.clone()).unwrap(), dir);
    let mut orphan = records;
    orphan.paths.clear();
    assert_eq!(
        Directory::from_records(orphan),
        Err(DirectoryError::UnknownPath(path("/ssh")))
    );
    // Deleting the path deletes its attachments.
    let delete = AdminCommand::Delete { name: path("/ssh") };
    admin(&mut dir, &mut n, delete).unwrap();
    assert!(dir.records().attachments.is_empty());
}

proptest! {
    /// What a store would hold after any sequence of commands rebuilds the same directory,
    /// and replaying the changes on the starting directory reaches it too.
    #[test]
    fn stored_changes_rebuild_the_same_directory(
        commands in proptest::collection::vec((command(), proptest::option::of(bind())), 0..40),
    ) {
        let (mut dir, mut n) = (acme(), 0);
        let mut replica = acme();
        for (command, bind) in commands {
            // Now and then a daemon registers with its token and binds its key.
            let bound = bind.and_then(|(name, k)| {
                let mut d = dir.daemon(&tenant("acme"), &name)?.clone();
                d.key.get_or_insert(PublicKey::from_bytes([k; 32]));
                Some(DirectoryChange::PutDaemon(d))
            });
            if let Some(change) = bound {
                dir.apply(&change);
                replica.apply(&change);
            }
            let mut token = || { n += 1; format!("t{n}") };
            if let Ok((_, changes)) = run_admin(&dir, &tenant("acme"), command, &mut token, &live()) {
                for change in &changes {
                    dir.apply(change);
                    replica.apply(change);
                }
            }
        }
        prop_assert_eq!(&replica, &dir);
        prop_assert_eq!(Directory::from_records(dir.records()).unwrap(), dir);
    }
}

fn daemon(name: &str) -> DaemonName {
    name.parse().unwrap()
}

#[test]
fn daemon_names_follow_the_tenant_name_rules() {
    for good in ["laptop", "a", "nas-2_b", &"x".repeat(MAX_DAEMON_NAME_LEN)] {
        assert!(good.parse::<DaemonName>().is_ok(), "{good}");
    }
    for bad in [
        "",
        "Laptop",
        "a b",
        "é",
        "a/b",
        &"x".repeat(MAX_DAEMON_NAME_LEN + 1),
    ] {
        let err = bad.parse::<DaemonName>().unwrap_err();
        assert!(err.contains("daemon name"), "{bad}: {err}");
    }
}

#[test]
fn daemon_tokens_resolve_and_redeemed_or_unregistered_ones_do_not() {
    let (mut dir, mut n) = (acme(), 0);
    let answer = admin(
        &mut dir,
        &mut n,
        AdminCommand::Register {
            name: daemon("laptop"),
        },
    );
    let Ok(AdminAnswer::DaemonRegistered { token, .. }) = answer else {
        panic!("{answer:?}")
    };
    assert_eq!(
        dir.credential(&token),
        Some(&Credential::Daemon(tenant("acme"), daemon("laptop")))
    );
    let record = dir.daemon(&tenant("acme"), &daemon("laptop")).unwrap();
    assert_eq!((record.token, record.key), (TokenHash::of(&token), None));
    // Bound, then redeemed: the old token is gone and the key unbound.
    let mut bound = record.clone();
    bound.key = Some(PublicKey::from_bytes([1; 32]));
    dir.apply(&DirectoryChange::PutDaemon(bound));
    let answer = admin(
        &mut dir,
        &mut n,
        AdminCommand::RedeemDaemon {
            name: daemon("laptop"),
        },
    );
    let Ok(AdminAnswer::DaemonRedeemed { token: new, .. }) = answer else {
        panic!("{answer:?}")
    };
    assert_eq!(dir.credential(&token), None);
    assert!(dir.credential(&new).is_some());
    assert_eq!(
        dir.daemon(&tenant("acme"), &daemon("laptop")).unwrap().key,
        None
    );
    let answer = admin(
        &mut dir,
        &mut n,
        AdminCommand::Unregister {
            name: daemon("laptop"),
        },
    );
    assert!(
        matches!(answer, Ok(AdminAnswer::Unregistered { key: None, .. })),
        "{answer:?}"
    );
    assert_eq!(dir.credential(&new), None);
    assert!(dir.daemon(&tenant("acme"), &daemon("laptop")).is_none());
    assert_eq!(
        admin(
            &mut dir,
            &mut n,
            AdminCommand::Unregister {
                name: daemon("laptop")
            }
        ),
        Err(ErrorCode::UnknownService)
    );
}

#[test]
fn a_tenant_holds_at_most_max_daemons() {
    let (mut dir, mut n) = (acme(), 0);
    for i in 0..MAX_DAEMONS_PER_TENANT {
        let register = AdminCommand::Register {
            name: daemon(&format!("d{i}")),
        };
        admin(&mut dir, &mut n, register).unwrap();
    }
    let one_more = AdminCommand::Register {
        name: daemon("last"),
    };
    assert_eq!(
        admin(&mut dir, &mut n, one_more.clone()),
        Err(ErrorCode::TooMany)
    );
    // Stored, they load back; one more in the records is refused.
    let mut records = dir.records();
    assert_eq!(records.daemons.len(), MAX_DAEMONS_PER_TENANT);
    assert_eq!(Directory::from_records(records.clone()).unwrap(), dir);
    records.daemons.push(DaemonRecord {
        tenant: tenant("acme"),
        name: daemon("last"),
        token: TokenHash::of("last"),
        key: None,
    });
    assert_eq!(
        Directory::from_records(records),
        Err(DirectoryError::TooMany)
    );
    // One gone, one may come.
    admin(
        &mut dir,
        &mut n,
        AdminCommand::Unregister { name: daemon("d0") },
    )
    .unwrap();
    admin(&mut dir, &mut n, one_more).unwrap();
}

#[test]
fn stored_daemons_are_checked_when_loaded() {
    let d = DaemonRecord {
        tenant: tenant("acme"),
        name: daemon("laptop"),
        token: TokenHash::of("D"),
        key: Some(PublicKey::from_bytes([1; 32])),
    };
    let load = |daemons: Vec<DaemonRecord>| {
        let mut records = acme().records();
        records.daemons = daemons;
        Directory::from_records(records)
    };
    assert!(load(vec![d.clone()]).is_ok());
    let mut stranger = d.clone();
    stranger.tenant = tenant("nobody");
    assert_eq!(
        load(vec![stranger]),
        Err(DirectoryError::UnknownTenant(tenant("nobody")))
    );
    let mut same_token = d.clone();
    same_token.name = daemon("nas");
    assert_eq!(
        load(vec![d.clone(), same_token]),
        Err(DirectoryError::DuplicateToken)
    );
    let mut masters = d.clone();
    masters.token = TokenHash::of("M");
    assert_eq!(load(vec![masters]), Err(DirectoryError::DuplicateToken));
    let mut same_name = d.clone();
    same_name.token = TokenHash::of("D2");
    assert!(matches!(
        load(vec![d, same_name]),
        Err(DirectoryError::Duplicate(_))
    ));
}

#[test]
fn daemons_come_in_bounded_pages_filtered_by_path() {
    let (mut dir, mut n) = (acme(), 0);
    for path_name in ["/a", "/b"] {
        admin(
            &mut dir,
            &mut n,
            AdminCommand::Create {
                name: path(path_name),
                fixed: false,
                max_connections: None,
            },
        )
        .unwrap();
    }
    for i in 0..12 {
        admin(
            &mut dir,
            &mut n,
            AdminCommand::Register {
                name: daemon(&format!("d{i:02}")),
            },
        )
        .unwrap();
        let mut d = dir
            .daemon(&tenant("acme"), &daemon(&format!("d{i:02}")))
            .unwrap()
            .clone();
        d.key = Some(PublicKey::from_bytes([i; 32]));
        dir.apply(&DirectoryChange::PutDaemon(d));
    }
    // Daemon 0 uses more paths than a page shows; the even ones expose /a, the rest nothing.
    let many: Vec<DaemonPath> = (0..=MAX_DAEMON_PAGE_PATHS)
        .map(|i| DaemonPath {
            name: path(&format!("/m{i}")),
            role: TokenRole::Client,
        })
        .collect();
    let uses = move |k: &PublicKey| -> Option<Vec<DaemonPath>> {
        match k.as_bytes()[0] {
            0 => Some(many.clone()),
            b if b % 2 == 0 => Some(vec![DaemonPath {
                name: path("/a"),
                role: TokenRole::Server,
            }]),
            1 => None,
            _ => Some(Vec::new()),
        }
    };
    let live = Live {
        exposed_by: &|_| None,
        registered: &|_| true,
        uses: &uses,
        connections: &|_| 0,
        relay_bytes_per_sec: 1000,
        online: &Vec::new,
        failed: &Vec::new,
    };
    let page = |after: Option<DaemonName>, path: Option<ServiceName>| {
        let command = AdminCommand::Daemons { path, after };
        let mut token = || String::from("x");
        match run_admin(&dir, &tenant("acme"), command, &mut token, &live) {
            Ok((AdminAnswer::Daemons { daemons, more }, changes)) => {
                assert!(changes.is_empty());
                (daemons, more)
            }
            other => panic!("{other:?}"),
        }
    };
    let (mut all, mut after) = (Vec::new(), None);
    loop {
        let (daemons, more) = page(after.clone(), None);
        assert!(!daemons.is_empty() && daemons.len() <= MAX_DAEMON_PAGE);
        assert!(daemons.iter().map(|d| d.paths.len()).sum::<usize>() <= MAX_DAEMON_PAGE_PATHS);
        after = daemons.last().map(|d| d.name.clone());
        all.extend(daemons);
        if !more {
            break;
        }
    }
    assert_eq!(all.len(), 12);
    assert_eq!(
        (all[0].paths.len(), all[0].more_paths),
        (MAX_DAEMON_PAGE_PATHS, 1)
    );
    assert!(!all[1].online && all[1].paths.is_empty(), "{:?}", all[1]);
    // Only the daemons using /a: the even ones but 0.
    let (filtered, more) = page(None, Some(path("/a")));
    assert!(!more);
    let names: Vec<&str> = filtered.iter().map(|d| d.name.as_str()).collect();
    assert_eq!(names, ["d02", "d04", "d06", "d08", "d10"]);
    assert!(
        filtered
            .iter()
            .all(|d| d.online && d.paths.iter().any(|p| p.name == path("/a")))
    );
}

#[test]
fn a_tree_shows_limits_connections_and_a_bounded_number_of_attachments() {
    let (mut dir, mut n) = (acme(), 0);
    let listen = Attachment::Listen {
        addr: "127.0.0.1:2222".parse().unwrap(),
    };
    for (p, max) in [("/a", Some(3)), ("/b", None)] {
        let create = AdminCommand::Create {
            name: path(p),
            fixed: false,
            max_connections: max,
        };
        admin(&mut dir, &mut n, create).unwrap();
    }
    // A daemon registered under a name shows by name, others by key.
    let laptop = PublicKey::from_bytes([1; 32]);
    let register = AdminCommand::Register {
        name: "laptop".parse().unwrap(),
    };
    admin(&mut dir, &mut n, register).unwrap();
    let mut record = dir
        .daemon(&tenant("acme"), &"laptop".parse().unwrap())
        .cloned()
        .unwrap();
    record.key = Some(laptop);
    dir.apply(&DirectoryChange::PutDaemon(record));
    let expose = AdminCommand::Rattach {
        name: path("/a"),
        daemon: laptop.into(),
        attach: Attachment::Expose {
            target: "127.0.0.1:80".into(),
        },
    };
    admin(&mut dir, &mut n, expose).unwrap();
    // Seven more clients: /a shows MAX_TREE_PAGE_ATTACHMENTS in all and counts the rest;
    // /b, after it, has no room left and counts its one.
    for b in 2..8u8 {
        let rattach = AdminCommand::Rattach {
            name: path("/a"),
            daemon: PublicKey::from_bytes([b; 32]).into(),
            attach: listen.clone(),
        };
        admin(&mut dir, &mut n, rattach).unwrap();
    }
    let rattach = AdminCommand::Rattach {
        name: path("/b"),
        daemon: PublicKey::from_bytes([2; 32]).into(),
        attach: listen.clone(),
    };
    admin(&mut dir, &mut n, rattach).unwrap();
    let live = Live {
        exposed_by: &|_| None,
        registered: &|k| k.as_bytes()[0] % 2 == 1,
        uses: &|_| None,
        connections: &|p| if p.as_str() == "/a" { 2 } else { 0 },
        relay_bytes_per_sec: 1 << 20,
        online: &Vec::new,
        failed: &Vec::new,
    };
    let mut token = || String::from("x");
    let tree = AdminCommand::Tree { after: None };
    let Ok((AdminAnswer::Tree { paths, limits, .. }, _)) =
        run_admin(&dir, &tenant("acme"), tree, &mut token, &live)
    else {
        panic!("a tree")
    };
    assert_eq!(limits.relay_bytes_per_sec, 1 << 20);
    assert_eq!(limits.max_paths as usize, MAX_PATHS_PER_TENANT);
    assert_eq!(limits.max_daemons as usize, MAX_DAEMONS_PER_TENANT);
    let (a, b) = (&paths[0], &paths[1]);
    assert_eq!((a.connections, a.max_connections), (2, Some(3)));
    assert_eq!((b.connections, b.max_connections), (0, None));
    assert_eq!(a.attached.len(), MAX_TREE_PAGE_ATTACHMENTS);
    assert_eq!(a.more_attached, 7 - MAX_TREE_PAGE_ATTACHMENTS as u32);
    assert_eq!((b.attached.len(), b.more_attached), (0, 1));
    assert_eq!(
        a.attached[0],
        AttachedView {
            daemon: DaemonRef::Name("laptop".parse().unwrap()),
            role: TokenRole::Server,
            online: true,
        }
    );
    assert_eq!(
        a.attached[1],
        AttachedView {
            daemon: PublicKey::from_bytes([2; 32]).into(),
            role: TokenRole::Client,
            online: false,
        }
    );
}
