//! The server's authority through the protocol: tenants of open names and of the directory,
//! path tokens, a master's commands, fixed paths, and the changes handed out to be stored.

use std::collections::BTreeSet;
use std::time::Duration;

use super::*;
use crate::rendezvous::directory::{
    AdminAnswer, AdminCommand, Directory, DirectoryChange, PathRecord, Records, TenantRecord,
    TokenHash, TokenRole,
};

const SECOND: Duration = Duration::from_secs(1);

/// A server whose directory has tenant `acme` (master `M`) with `/ssh` (server token `S`,
/// client token `C`, fixed if asked) and tenant `other` (master `M2`) with `/ssh` too
/// (`S2`, `C2`); it also accepts the open token `open`.
pub(super) fn server_config(fixed: bool) -> ServerConfig {
    let tenant = |name: &str, master: &str| TenantRecord {
        name: name.parse().unwrap(),
        master: TokenHash::of(master),
        limits: Default::default(),
    };
    let ssh = |t: &str, server: &str, client: &str| PathRecord {
        tenant: t.parse().unwrap(),
        name: name("/ssh"),
        server: TokenHash::of(server),
        client: TokenHash::of(client),
        fixed,
        clients: BTreeSet::new(),
        max_connections: None,
    };
    let records = Records {
        tenants: vec![tenant("acme", "M"), tenant("other", "M2")],
        paths: vec![ssh("acme", "S", "C"), ssh("other", "S2", "C2")],
        attachments: Vec::new(),
        daemons: Vec::new(),
    };
    ServerConfig {
        tokens: TokenPolicy::Only([("open".to_string(), limits(100))].into()),
        directory: Directory::from_records(records).unwrap(),
        ..ServerConfig::default()
    }
}

fn limits(n: usize) -> TokenLimits {
    TokenLimits {
        max_services: n,
        max_registrations: n,
    }
}

/// Adds a daemon registering with `token` (and `path_tokens`), publishing `services`.
pub(super) fn daemon(
    h: &mut Harness,
    token: &str,
    path_tokens: &[&str],
    services: &[&str],
) -> usize {
    let mut config = ClientConfig::new(token);
    config.path_tokens = path_tokens.iter().map(|t| t.to_string()).collect();
    config.services = services.iter().map(|s| name(s)).collect();
    h.add_with(config)
}

/// Looks `service` up from daemon `i`: the peer it was introduced to, or the error.
pub(super) fn lookup(h: &mut Harness, i: usize, service: &str) -> Result<PublicKey, ErrorCode> {
    let request = h.with(i, |c, now| c.lookup(now, name(service)));
    h.run(2 * SECOND);
    for event in h.events(i) {
        match event {
            ClientEvent::Introduced {
                request: Some(r),
                peer,
                ..
            } if r == request => return Ok(peer),
            ClientEvent::RequestFailed {
                request: r, code, ..
            } if r == request => {
                return Err(code);
            }
            _ => {}
        }
    }
    panic!("no answer to the lookup of {service}: {:?}", h.events(i))
}

/// Sends `command` from daemon `i` with `master`: the answer or the error.
pub(super) fn admin(
    h: &mut Harness,
    i: usize,
    master: &str,
    command: AdminCommand,
) -> Result<AdminAnswer, ErrorCode> {
    let request = h.with(i, |c, now| c.admin(now, master.into(), command));
    h.run(2 * SECOND);
    for event in h.events(i) {
        match event {
            ClientEvent::AdminAnswered { request: r, answer } if r == request => return Ok(answer),
            ClientEvent::RequestFailed {
                request: r, code, ..
            } if r == request => {
                return Err(code);
            }
            _ => {}
        }
    }
    panic!("no answer to the admin command")
}

pub(super) fn registered(h: &Harness, i: usize) -> bool {
    h.client(i).is_registered()
}

#[test]
fn a_server_token_exposes_its_path_and_a_client_token_connects_to_it() {
    let mut h = Harness::new(server_config(false));
    let server = daemon(&mut h, "S", &[], &["/ssh"]);
    let client = daemon(&mut h, "C", &[], &[]);
    h.run(SECOND);
    assert!(registered(&h, server) && registered(&h, client));
    assert_eq!(lookup(&mut h, client, "/ssh"), Ok(key(server)));
}

#[test]
fn a_client_token_cannot_expose_and_undeclared_names_do_not_exist() {
    let mut h = Harness::new(server_config(false));
    let with_client_token = daemon(&mut h, "C", &[], &["/ssh"]);
    let undeclared = daemon(&mut h, "S", &[], &["/web"]);
    h.run(SECOND);
    assert_eq!(
        registration_failures(&h, with_client_token),
        [ErrorCode::BadToken]
    );
    assert_eq!(registration_failures(&h, undeclared), [ErrorCode::BadToken]);
    // A server token is no client token.
    let server = daemon(&mut h, "S", &[], &["/ssh"]);
    let other = daemon(&mut h, "S", &[], &[]);
    h.run(SECOND);
    assert!(registered(&h, server) && registered(&h, other));
    assert_eq!(
        lookup(&mut h, other, "/ssh"),
        Err(ErrorCode::UnknownService)
    );
}

#[test]
fn tenants_never_see_each_other() {
    let mut h = Harness::new(server_config(false));
    let acme = daemon(&mut h, "S", &[], &["/ssh"]);
    let other = daemon(&mut h, "S2", &[], &["/ssh"]);
    let open = daemon(&mut h, "open", &[], &["/ssh"]);
    let acme_client = daemon(&mut h, "C", &[], &[]);
    let other_client = daemon(&mut h, "C2", &[], &[]);
    let open_client = daemon(&mut h, "open", &[], &[]);
    h.run(SECOND);
    assert_eq!(lookup(&mut h, acme_client, "/ssh"), Ok(key(acme)));
    assert_eq!(lookup(&mut h, other_client, "/ssh"), Ok(key(other)));
    assert_eq!(lookup(&mut h, open_client, "/ssh"), Ok(key(open)));
    // A path token of another tenant is refused alone: the registration stands on its own
    // token, and the other tenant's path stays out of reach.
    let mixed = daemon(&mut h, "C", &["C2"], &[]);
    h.run(SECOND);
    assert_eq!(registration_failures(&h, mixed), []);
    assert!(h.events(mixed).iter().any(
        |e| matches!(e, ClientEvent::TokensRefused { starts } if *starts == ["C2".to_string()])
    ));
    assert_eq!(lookup(&mut h, mixed, "/ssh"), Ok(key(acme)));
}

#[test]
fn path_tokens_add_paths_to_one_registration() {
    let mut h = Harness::new(server_config(false));
    let server = daemon(&mut h, "S", &[], &["/ssh"]);
    // The master token is a registration token of its tenant too, and allows every path.
    let master = daemon(&mut h, "M", &[], &[]);
    let both = daemon(&mut h, "open", &[], &[]);
    h.run(SECOND);
    assert_eq!(lookup(&mut h, master, "/ssh"), Ok(key(server)));
    // An open token's daemon lives in the open namespace: the directory's /ssh is not there.
    assert_eq!(lookup(&mut h, both, "/ssh"), Err(ErrorCode::UnknownService));
    let with_path_token = daemon(&mut h, "M", &["C"], &[]);
    h.run(SECOND);
    assert_eq!(lookup(&mut h, with_path_token, "/ssh"), Ok(key(server)));
}

#[test]
fn a_redeemed_client_token_stops_working_at_once() {
    let mut h = Harness::new(server_config(false));
    let server = daemon(&mut h, "S", &[], &["/ssh"]);
    let client = daemon(&mut h, "C", &[], &[]);
    let master = daemon(&mut h, "M", &[], &[]);
    h.run(SECOND);
    assert_eq!(lookup(&mut h, client, "/ssh"), Ok(key(server)));
    let answer = admin(
        &mut h,
        master,
        "M",
        AdminCommand::Redeem {
            name: name("/ssh"),
            role: TokenRole::Client,
        },
    );
    let Ok(AdminAnswer::Redeemed { token, .. }) = answer else {
        panic!("{answer:?}")
    };
    // The registration made with the old token ends: the daemon registers again at once
    // and is refused...
    h.run(SECOND);
    assert!(!registered(&h, client));
    assert!(registration_failures(&h, client).contains(&ErrorCode::BadToken));
    // ...as is a new one, and the new token works.
    let late = daemon(&mut h, "C", &[], &[]);
    let fresh = daemon(&mut h, &token, &[], &[]);
    h.run(SECOND);
    assert_eq!(registration_failures(&h, late), [ErrorCode::BadToken]);
    assert_eq!(lookup(&mut h, fresh, "/ssh"), Ok(key(server)));
    // The daemon whose only token is gone loses its registration (and is refused when it
    // registers again), the relay stops forwarding for it, and the destination is told to
    // drop it.
    assert!(!h.server().introduced(&key(client), &key(server)));
    assert!(
        h.events(server)
            .contains(&ClientEvent::Revoked { peer: key(client) })
    );
    h.run(40 * SECOND);
    assert!(!registered(&h, client), "the old token registered again");
    assert!(registered(&h, fresh) && registered(&h, server));
}

#[test]
fn a_redeemed_server_token_withdraws_the_name_and_a_deleted_path_is_gone() {
    let mut h = Harness::new(server_config(false));
    let server = daemon(&mut h, "S", &[], &["/ssh"]);
    let client = daemon(&mut h, "C", &[], &[]);
    let master = daemon(&mut h, "M", &[], &[]);
    h.run(SECOND);
    let answer = admin(
        &mut h,
        master,
        "M",
        AdminCommand::Redeem {
            name: name("/ssh"),
            role: TokenRole::Server,
        },
    );
    assert!(
        matches!(answer, Ok(AdminAnswer::Redeemed { .. })),
        "{answer:?}"
    );
    assert_eq!(
        h.count_server(
            |e| matches!(e, ServerEvent::NameWithdrawn { key: k, .. } if *k == key(server))
        ),
        1
    );
    assert_eq!(
        lookup(&mut h, client, "/ssh"),
        Err(ErrorCode::UnknownService)
    );

    let deleted = admin(
        &mut h,
        master,
        "M",
        AdminCommand::Delete { name: name("/ssh") },
    );
    assert!(
        matches!(deleted, Ok(AdminAnswer::Deleted { .. })),
        "{deleted:?}"
    );
    assert_eq!(
        lookup(&mut h, master, "/ssh"),
        Err(ErrorCode::UnknownService)
    );
}

#[test]
fn a_fixed_path_keeps_its_first_client_until_the_master_reloads_it() {
    let mut h = Harness::new(server_config(true));
    let server = daemon(&mut h, "S", &[], &["/ssh"]);
    let first = daemon(&mut h, "C", &[], &[]);
    let second = daemon(&mut h, "C", &[], &[]);
    let master = daemon(&mut h, "M", &[], &[]);
    h.run(SECOND);
    assert_eq!(lookup(&mut h, first, "/ssh"), Ok(key(server)));
    assert_eq!(lookup(&mut h, second, "/ssh"), Err(ErrorCode::NotPinned));
    assert_eq!(
        lookup(&mut h, first, "/ssh"),
        Ok(key(server)),
        "the pinned key is refused"
    );
    // The master's own connections neither pin nor get refused.
    assert_eq!(lookup(&mut h, master, "/ssh"), Ok(key(server)));
    let reloaded = admin(
        &mut h,
        master,
        "M",
        AdminCommand::Reload { name: name("/ssh") },
    );
    assert_eq!(
        reloaded,
        Ok(AdminAnswer::Reloaded {
            name: name("/ssh"),
            forgotten: 1
        })
    );
    assert_eq!(lookup(&mut h, second, "/ssh"), Ok(key(server)));
    assert_eq!(lookup(&mut h, first, "/ssh"), Err(ErrorCode::NotPinned));
}

#[test]
fn only_a_master_token_administers_and_only_its_own_tenant() {
    let mut h = Harness::new(server_config(false));
    let client = daemon(&mut h, "C", &[], &[]);
    let master = daemon(&mut h, "M", &[], &[]);
    h.run(SECOND);
    for token in ["C", "S", "open", "M3", ""] {
        let tree = AdminCommand::Tree { after: None };
        assert_eq!(
            admin(&mut h, client, token, tree),
            Err(ErrorCode::BadToken),
            "{token}"
        );
    }
    // Another tenant's master sees its own tree, and creating there does not touch acme.
    let created = admin(
        &mut h,
        master,
        "M2",
        AdminCommand::Create {
            name: name("/db"),
            fixed: false,
            max_connections: None,
        },
    );
    assert!(
        matches!(created, Ok(AdminAnswer::Created { .. })),
        "{created:?}"
    );
    let tree = admin(&mut h, master, "M", AdminCommand::Tree { after: None }).unwrap();
    let AdminAnswer::Tree {
        tenant,
        paths,
        more,
        ..
    } = tree
    else {
        panic!("{tree:?}")
    };
    assert_eq!((tenant.as_str(), more), ("acme", false));
    assert_eq!(
        paths.iter().map(|p| p.name.to_string()).collect::<Vec<_>>(),
        ["/ssh"]
    );
}

#[test]
fn every_change_comes_out_for_the_store_and_rebuilds_the_directory() {
    let config = server_config(true);
    let mut stored = config.directory.clone();
    let mut h = Harness::new(config);
    let _server = daemon(&mut h, "S", &[], &["/ssh"]);
    let client = daemon(&mut h, "C", &[], &[]);
    let master = daemon(&mut h, "M", &[], &[]);
    h.run(SECOND);
    lookup(&mut h, client, "/ssh").unwrap();
    let create = AdminCommand::Create {
        name: name("/web"),
        fixed: false,
        max_connections: None,
    };
    admin(&mut h, master, "M", create).unwrap();
    let redeem = AdminCommand::Redeem {
        name: name("/web"),
        role: TokenRole::Client,
    };
    admin(&mut h, master, "M", redeem).unwrap();
    admin(
        &mut h,
        master,
        "M",
        AdminCommand::Delete { name: name("/ssh") },
    )
    .unwrap();
    let changes: Vec<DirectoryChange> = h
        .server_events()
        .into_iter()
        .filter_map(|(_, e)| match e {
            ServerEvent::Directory(change) => Some(change),
            _ => None,
        })
        .collect();
    // The pin, the creation, the redemption, the deletion.
    assert_eq!(changes.len(), 4, "{changes:?}");
    for change in &changes {
        stored.apply(change);
    }
    assert_eq!(&stored, h.server().directory());
}
