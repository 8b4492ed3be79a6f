//! Daemon tokens through the protocol (`burrow admin register`/`unregister`/`redeem daemon`/
//! `daemons`): the first registration binds its key, another key is refused with the reason
//! (and counted), unregister and redeem end the bound daemon's registration and sessions.

use std::time::Duration;

use super::authority::{admin, daemon, lookup, registered, server_config};
use super::*;
use crate::rendezvous::directory::{
    AdminAnswer, AdminCommand, Attachment, DaemonName, DaemonPath, DaemonRef, DirectoryChange,
    TokenRole,
};

const SECOND: Duration = Duration::from_secs(1);

fn laptop() -> DaemonName {
    "laptop".parse().unwrap()
}

/// What `burrow admin register laptop` prints: the daemon token.
fn register(h: &mut Harness, master: usize) -> String {
    let answer = admin(h, master, "M", AdminCommand::Register { name: laptop() });
    let Ok(AdminAnswer::DaemonRegistered { token, .. }) = answer else {
        panic!("{answer:?}")
    };
    token
}

/// The server's detail for each refused registration of daemon `i`.
fn refusals(h: &Harness, i: usize) -> Vec<(ErrorCode, String)> {
    h.events(i)
        .into_iter()
        .filter_map(|e| match e {
            ClientEvent::RegistrationFailed { code, detail } => Some((code, detail)),
            _ => None,
        })
        .collect()
}

fn bound_key(h: &Harness) -> Option<Option<PublicKey>> {
    let acme = "acme".parse().unwrap();
    h.server()
        .directory()
        .daemon(&acme, &laptop())
        .map(|d| d.key)
}

#[test]
fn a_daemon_token_binds_the_first_key_and_refuses_another() {
    let mut h = Harness::new(server_config(false));
    let master = daemon(&mut h, "M", &[], &[]);
    h.run(SECOND);
    let token = register(&mut h, master);
    assert_eq!(bound_key(&h), Some(None), "not yet bound");

    // First use binds (and the change is handed out to be stored); the daemon token lets it
    // register in the tenant, and it exposes /ssh with the path's server token.
    let first = daemon(&mut h, &token, &["S"], &["/ssh"]);
    h.run(SECOND);
    assert!(registered(&h, first));
    assert_eq!(bound_key(&h), Some(Some(key(first))));
    let binds = h.count_server(|e| {
        matches!(e, ServerEvent::Directory(DirectoryChange::PutDaemon(d)) if d.key == Some(key(first)))
    });
    assert_eq!(binds, 1);
    let client = daemon(&mut h, "C", &[], &[]);
    h.run(SECOND);
    assert_eq!(lookup(&mut h, client, "/ssh"), Ok(key(first)));

    // Another key with the same token is refused with the reason, and the server counts it.
    let second = daemon(&mut h, &token, &[], &[]);
    h.run(SECOND);
    assert!(!registered(&h, second));
    let refused = refusals(&h, second);
    assert!(
        refused
            .iter()
            .any(|(c, d)| *c == ErrorCode::BadToken && d.contains("bound to another key")),
        "{refused:?}"
    );
    assert!(h.count_server(|e| matches!(e, ServerEvent::DaemonKeyRefused { refused: 1, .. })) == 1);
    assert_eq!(bound_key(&h), Some(Some(key(first))));
    // The first one is untouched, and may register again (its renewals and re-registrations).
    h.run(40 * SECOND);
    assert!(registered(&h, first));

    // `daemons` shows it online with its key and the path it exposes; by name it may be
    // rattached, and the attachment shows too.
    let listen = Attachment::Listen {
        addr: "127.0.0.1:2222".parse().unwrap(),
    };
    let rattach = AdminCommand::Rattach {
        name: name("/ssh"),
        daemon: DaemonRef::Name(laptop()),
        attach: listen,
    };
    let answer = admin(&mut h, master, "M", rattach);
    assert_eq!(
        answer,
        Ok(AdminAnswer::Rattached {
            name: name("/ssh"),
            daemon: key(first)
        })
    );
    let list = AdminCommand::Daemons {
        path: Some(name("/ssh")),
        after: None,
    };
    let Ok(AdminAnswer::Daemons { daemons, more }) = admin(&mut h, master, "M", list) else {
        panic!("no daemons page")
    };
    assert!(!more);
    assert_eq!(daemons.len(), 1);
    let view = &daemons[0];
    assert_eq!((view.key, view.online), (Some(key(first)), true));
    let role = |role| DaemonPath {
        name: name("/ssh"),
        role,
    };
    assert_eq!(
        view.paths,
        [role(TokenRole::Server), role(TokenRole::Client)]
    );
}

#[test]
fn redeem_unbinds_and_unregister_ends_the_daemon_and_its_sessions() {
    let mut h = Harness::new(server_config(false));
    let master = daemon(&mut h, "M", &[], &[]);
    h.run(SECOND);
    let token = register(&mut h, master);
    // It holds a path token too: the daemon token's withdrawal still ends it.
    let first = daemon(&mut h, &token, &["S"], &["/ssh"]);
    let client = daemon(&mut h, "C", &[], &[]);
    h.run(SECOND);
    assert_eq!(lookup(&mut h, client, "/ssh"), Ok(key(first)));

    // Redeem: the bound daemon loses its registration, its peers drop it, the key is unbound.
    let answer = admin(
        &mut h,
        master,
        "M",
        AdminCommand::RedeemDaemon { name: laptop() },
    );
    let Ok(AdminAnswer::DaemonRedeemed { token: new, .. }) = answer else {
        panic!("{answer:?}")
    };
    h.run(SECOND);
    assert!(!registered(&h, first));
    assert!(!h.server().introduced(&key(client), &key(first)));
    assert!(
        h.events(client)
            .contains(&ClientEvent::Revoked { peer: key(first) })
    );
    assert_eq!(bound_key(&h), Some(None));
    // The old token is refused from then on; the new one binds again, to any key.
    h.run(40 * SECOND);
    assert!(
        !registered(&h, first),
        "the old daemon token registered again"
    );
    let second = daemon(&mut h, &new, &["S"], &["/ssh"]);
    h.run(SECOND);
    assert!(registered(&h, second));
    assert_eq!(bound_key(&h), Some(Some(key(second))));
    assert_eq!(lookup(&mut h, client, "/ssh"), Ok(key(second)));

    // Unregister: the entry goes, and with it the daemon's registration and sessions.
    let answer = admin(
        &mut h,
        master,
        "M",
        AdminCommand::Unregister { name: laptop() },
    );
    assert_eq!(
        answer,
        Ok(AdminAnswer::Unregistered {
            name: laptop(),
            key: Some(key(second))
        })
    );
    h.run(SECOND);
    assert!(!registered(&h, second));
    assert!(
        h.events(client)
            .contains(&ClientEvent::Revoked { peer: key(second) })
    );
    assert_eq!(bound_key(&h), None);
    assert!(
        h.count_server(|e| matches!(
            e,
            ServerEvent::Directory(DirectoryChange::DeleteDaemon { .. })
        )) == 1
    );
    h.run(40 * SECOND);
    assert!(!registered(&h, second));
}

#[test]
fn daemon_commands_refuse_bad_names_unknown_daemons_and_other_tenants() {
    let mut h = Harness::new(server_config(false));
    let master = daemon(&mut h, "M", &[], &[]);
    let other = daemon(&mut h, "M2", &[], &[]);
    let user = daemon(&mut h, "S", &[], &[]);
    h.run(SECOND);
    let token = register(&mut h, master);
    let nas: DaemonName = "nas".parse().unwrap();
    let cases = [
        // Twice the same name.
        (
            master,
            "M",
            AdminCommand::Register { name: laptop() },
            ErrorCode::NameTaken,
        ),
        // Unknown daemons.
        (
            master,
            "M",
            AdminCommand::Unregister { name: nas.clone() },
            ErrorCode::UnknownService,
        ),
        (
            master,
            "M",
            AdminCommand::RedeemDaemon { name: nas.clone() },
            ErrorCode::UnknownService,
        ),
        // Another tenant's master sees none of acme's daemons.
        (
            other,
            "M2",
            AdminCommand::Unregister { name: laptop() },
            ErrorCode::UnknownService,
        ),
        (
            other,
            "M2",
            AdminCommand::RedeemDaemon { name: laptop() },
            ErrorCode::UnknownService,
        ),
        // A path token, or the daemon token itself, is no master token.
        (
            user,
            "S",
            AdminCommand::Register { name: nas.clone() },
            ErrorCode::BadToken,
        ),
        (
            master,
            &token,
            AdminCommand::Unregister { name: laptop() },
            ErrorCode::BadToken,
        ),
        // Listing by a path the tenant does not have.
        (
            master,
            "M",
            AdminCommand::Daemons {
                path: Some(name("/nope")),
                after: None,
            },
            ErrorCode::UnknownService,
        ),
        // Rattach by the name of a daemon not yet bound, or unknown.
        (
            master,
            "M",
            AdminCommand::Rattach {
                name: name("/ssh"),
                daemon: DaemonRef::Name(laptop()),
                attach: Attachment::Expose {
                    target: "127.0.0.1:22".into(),
                },
            },
            ErrorCode::UnknownService,
        ),
        (
            master,
            "M",
            AdminCommand::Rdetach {
                name: name("/ssh"),
                daemon: DaemonRef::Name(nas.clone()),
            },
            ErrorCode::UnknownService,
        ),
    ];
    for (i, t, command, code) in cases {
        assert_eq!(
            admin(&mut h, i, t, command.clone()),
            Err(code),
            "{command:?}"
        );
    }
    // Another tenant's master registers its own `laptop`; acme's stays as it was.
    let answer = admin(
        &mut h,
        other,
        "M2",
        AdminCommand::Register { name: laptop() },
    );
    assert!(
        matches!(answer, Ok(AdminAnswer::DaemonRegistered { .. })),
        "{answer:?}"
    );
    assert_eq!(bound_key(&h), Some(None));
    // A daemon token of acme presented as a path token of another tenant is refused alone
    // (the registration stands on the other tenant's token), and binds nothing.
    let stranger = daemon(&mut h, "M2", &[&token], &[]);
    h.run(SECOND);
    assert!(registered(&h, stranger));
    assert!(
        h.events(stranger)
            .iter()
            .any(|e| matches!(e, ClientEvent::TokensRefused { .. }))
    );
    assert_eq!(bound_key(&h), Some(None));
}

#[test]
fn daemons_online_without_an_entry_are_listed_apart_in_pages() {
    let mut h = Harness::new(server_config(false));
    let exposer = daemon(&mut h, "S", &[], &["/ssh"]);
    let client = daemon(&mut h, "C", &[], &[]);
    // Another tenant's daemon is never listed.
    let _other = daemon(&mut h, "C2", &[], &[]);
    let master = daemon(&mut h, "M", &[], &[]);
    h.run(SECOND);
    let unnamed = |h: &mut Harness, path: Option<&str>, after: Option<PublicKey>| {
        let command = AdminCommand::Unnamed {
            path: path.map(name),
            after,
        };
        match admin(h, master, "M", command) {
            Ok(AdminAnswer::Unnamed { daemons, more }) => (daemons, more),
            other => panic!("{other:?}"),
        }
    };
    let (all, more) = unnamed(&mut h, None, None);
    let mut expected = vec![
        (key(exposer), TokenRole::Server),
        (key(client), TokenRole::Client),
    ];
    expected.sort();
    let shown: Vec<(PublicKey, TokenRole)> = all.iter().map(|v| (v.key, v.paths[0].role)).collect();
    assert_eq!(
        (shown, more),
        (expected.clone(), false),
        "the asking master is left out"
    );
    assert!(all.iter().all(|v| v.paths[0].name == name("/ssh")));
    // Paged by key.
    let (rest, _) = unnamed(&mut h, None, Some(expected[0].0));
    assert_eq!(
        rest.iter().map(|v| v.key).collect::<Vec<_>>(),
        [expected[1].0]
    );
    // A daemon bound to an entry is listed by `Daemons`, not here.
    let register = AdminCommand::Register { name: laptop() };
    let Ok(AdminAnswer::DaemonRegistered { token, .. }) = admin(&mut h, master, "M", register)
    else {
        panic!("register")
    };
    let bound = daemon(&mut h, &token, &["C"], &[]);
    h.run(SECOND);
    assert!(registered(&h, bound));
    let (all, _) = unnamed(&mut h, Some("/ssh"), None);
    assert!(all.iter().all(|v| v.key != key(bound)), "{all:?}");
    assert_eq!(all.len(), 2);
    // An unknown path is refused by name.
    let command = AdminCommand::Unnamed {
        path: Some(name("/nope")),
        after: None,
    };
    assert_eq!(
        admin(&mut h, master, "M", command),
        Err(ErrorCode::UnknownService)
    );
}
