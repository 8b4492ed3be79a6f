//! `burrow import` through the protocol: a path token added to a live registration takes
//! effect at once and the server says what it allows; a refused one changes nothing; the
//! bounds hold; and the answer gets through loss.

use std::time::Duration;

use super::authority::{daemon, lookup, registered, server_config};
use super::*;
use crate::rendezvous::config::ConfigError;
use crate::rendezvous::directory::TokenRole;
use crate::rendezvous::grants::{Grant, Grants, TokenUse};
use crate::rendezvous::messages::{MAX_PATH_TOKEN_LEN, MAX_PATH_TOKENS};

const SECOND: Duration = Duration::from_secs(1);

/// Has daemon `i` present `tokens` from now on; the outcome, after `wait`.
fn import(h: &mut Harness, i: usize, tokens: &[&str], wait: Duration) -> Result<Grants, ErrorCode> {
    let tokens = tokens.iter().map(|t| t.to_string()).collect();
    h.with(i, |c, now| c.set_path_tokens(now, tokens))
        .expect("a valid set of tokens");
    h.run(wait);
    let outcome = h.events(i).into_iter().rev().find_map(|e| match e {
        ClientEvent::PathTokensSet { result } => Some(result.map_err(|(code, _)| code)),
        _ => None,
    });
    outcome.unwrap_or_else(|| panic!("no outcome of the import: {:?}", h.events(i)))
}

fn grant(path: &str, role: TokenRole) -> Grant {
    Grant {
        name: name(path),
        role,
    }
}

#[test]
fn an_imported_client_token_connects_at_once_and_the_server_says_what_it_allows() {
    let mut h = Harness::new(server_config(false));
    let server = daemon(&mut h, "S", &[], &["/ssh"]);
    // Registered with the path's server token, which lets it expose /ssh, not connect to it.
    let user = daemon(&mut h, "S", &[], &[]);
    h.run(SECOND);
    assert_eq!(lookup(&mut h, user, "/ssh"), Err(ErrorCode::UnknownService));

    let grants = import(&mut h, user, &["C"], 2 * SECOND).expect("imported");
    assert_eq!(
        grants,
        Grants {
            master: false,
            paths: vec![
                grant("/ssh", TokenRole::Server),
                grant("/ssh", TokenRole::Client)
            ],
        }
    );
    assert_eq!(grants.to_string(), "exposes /ssh; connects to /ssh");
    assert!(registered(&h, user));
    assert_eq!(lookup(&mut h, user, "/ssh"), Ok(key(server)));
}

#[test]
fn a_refused_token_changes_nothing_and_keeps_the_registration() {
    let mut h = Harness::new(server_config(false));
    let server = daemon(&mut h, "S", &[], &["/ssh"]);
    let user = daemon(&mut h, "M", &["C"], &[]);
    h.run(SECOND);
    assert_eq!(lookup(&mut h, user, "/ssh"), Ok(key(server)));
    // Another tenant's token, and one nobody made: refused, named, and undone at once.
    for bad in [&["C", "C2"][..], &["C", "nope"][..]] {
        assert_eq!(
            import(&mut h, user, bad, 2 * SECOND),
            Err(ErrorCode::BadToken)
        );
        assert!(registered(&h, user), "the old tokens register again");
        assert_eq!(lookup(&mut h, user, "/ssh"), Ok(key(server)));
    }
    // The registration was never reported as failed: the refusal was the import's.
    assert!(
        !h.events(user)
            .iter()
            .any(|e| matches!(e, ClientEvent::RegistrationFailed { .. })),
        "{:?}",
        h.events(user)
    );
    // The master's token says so.
    let grants = import(&mut h, user, &["C"], 2 * SECOND).unwrap();
    assert!(grants.master, "{grants:?}");
}

#[test]
fn a_daemon_of_open_names_cannot_import_a_directory_path() {
    let mut h = Harness::new(server_config(false));
    let user = daemon(&mut h, "open", &[], &[]);
    h.run(SECOND);
    assert_eq!(
        import(&mut h, user, &["C"], 2 * SECOND),
        Err(ErrorCode::BadToken)
    );
    assert!(registered(&h, user));
}

#[test]
fn too_many_or_too_long_tokens_and_a_second_import_are_refused_at_once() {
    let mut h = Harness::new(server_config(false));
    let user = daemon(&mut h, "S", &[], &[]);
    h.run(SECOND);
    let tokens = |n: usize, len: usize| vec!["t".repeat(len); n];
    let at_bound = tokens(MAX_PATH_TOKENS, MAX_PATH_TOKEN_LEN);
    let refusals = [
        (
            tokens(MAX_PATH_TOKENS + 1, 1),
            ConfigError::TooManyPathTokens,
        ),
        (tokens(1, MAX_PATH_TOKEN_LEN + 1), ConfigError::TokenTooLong),
    ];
    for (bad, why) in refusals {
        assert_eq!(h.with(user, |c, now| c.set_path_tokens(now, bad)), Err(why));
    }
    // At the bound: sent, and refused by the server (nobody made these tokens).
    h.with(user, |c, now| c.set_path_tokens(now, at_bound.clone()))
        .unwrap();
    assert_eq!(
        h.with(user, |c, now| c.set_path_tokens(now, vec!["C".into()])),
        Err(ConfigError::ImportPending)
    );
    h.run(2 * SECOND);
    assert!(registered(&h, user));
    assert!(h.events(user).iter().any(|e| matches!(
        e,
        ClientEvent::PathTokensSet {
            result: Err((ErrorCode::BadToken, _))
        }
    )));
    // Once answered, the next import goes.
    assert!(import(&mut h, user, &["C"], 2 * SECOND).is_ok());
}

#[test]
fn an_import_completes_through_loss_and_a_server_that_never_answers_undoes_it() {
    let mut h = Harness::new(server_config(false));
    let server = daemon(&mut h, "S", &[], &["/ssh"]);
    let user = daemon(&mut h, "S", &[], &[]);
    h.run(SECOND);
    h.impair(3, 300, 100);
    let grants = import(&mut h, user, &["C"], 20 * SECOND).expect("imported through loss");
    assert!(grants.connects().any(|n| *n == name("/ssh")));
    h.impair(3, 0, 0);
    h.run(5 * SECOND);
    assert_eq!(lookup(&mut h, user, "/ssh"), Ok(key(server)));

    // The server goes silent: the import is given up and the old tokens come back.
    h.set_online(user, false);
    assert_eq!(
        import(&mut h, user, &[], 25 * SECOND),
        Err(ErrorCode::NoAnswer)
    );
    h.set_online(user, true);
    h.run(2 * SECOND);
    assert!(registered(&h, user));
    assert_eq!(lookup(&mut h, user, "/ssh"), Ok(key(server)));
}

#[test]
fn a_stale_token_is_refused_alone_and_named_and_the_registration_stands() {
    let mut h = Harness::new(server_config(false));
    let server = daemon(&mut h, "S", &[], &["/ssh"]);
    // One token nobody made (say, one its master redeemed) and another tenant's, with the
    // client token of /ssh: registered with what is valid.
    let user = daemon(&mut h, "S", &["nope-123", "C", "C2"], &[]);
    h.run(SECOND);
    assert!(registered(&h, user));
    assert!(
        !h.events(user)
            .iter()
            .any(|e| matches!(e, ClientEvent::RegistrationFailed { .. })),
        "{:?}",
        h.events(user)
    );
    let refused: Vec<Vec<String>> = h
        .events(user)
        .into_iter()
        .filter_map(|e| match e {
            ClientEvent::TokensRefused { starts } => Some(starts),
            _ => None,
        })
        .collect();
    assert_eq!(refused, [vec!["nope-1".to_string(), "C2".to_string()]]);
    let uses: Vec<TokenUse> = h
        .client(user)
        .token_uses()
        .iter()
        .map(|(_, u)| u.clone())
        .collect();
    assert_eq!(
        uses,
        [
            TokenUse::Refused,
            TokenUse::Path(grant("/ssh", TokenRole::Client)),
            TokenUse::Refused
        ]
    );
    // The valid token works, and another tenant's grants nothing.
    assert_eq!(lookup(&mut h, user, "/ssh"), Ok(key(server)));

    // An import that adds a good token goes through the stale one; one that adds a stale
    // token is refused and undone.
    let grants = import(&mut h, user, &["nope-123", "C"], 2 * SECOND).expect("imported");
    assert_eq!(grants.to_string(), "exposes /ssh; connects to /ssh");
    assert_eq!(
        import(&mut h, user, &["nope-123", "C", "gone-456"], 2 * SECOND),
        Err(ErrorCode::BadToken)
    );
    h.run(SECOND);
    assert!(registered(&h, user));
    assert_eq!(h.client(user).token_uses().len(), 2, "the previous tokens");
}
