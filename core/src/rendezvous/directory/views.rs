//! What the listings of `burrow admin` show: a page of the tree, of the daemons and of the
//! daemons no entry binds, each bounded to fit one datagram.

use std::collections::BTreeSet;

use super::Directory;
use super::admin::{AdminAnswer, AttachedView, Live, PathView, TenantLimits, TokenRole};
use super::admin::{MAX_TREE_PAGE, MAX_TREE_PAGE_ATTACHMENTS};
use super::daemons::{
    DaemonPath, DaemonRecord, DaemonRef, DaemonView, MAX_DAEMON_PAGE, MAX_DAEMON_PAGE_PATHS,
    UnnamedView,
};
use super::records::{TenantName, TenantQuota};
use crate::crypto::PublicKey;
use crate::rendezvous::ServiceName;

/// The paths `key` is attached to in `tenant`, each as server (it exposes) or client.
fn attached_paths<'a>(
    dir: &'a Directory,
    tenant: &'a TenantName,
    key: &'a PublicKey,
) -> impl Iterator<Item = DaemonPath> + 'a {
    dir.attachments_of(tenant, key).filter_map(|a| {
        let role = if a.attach.as_ref()?.exposes() {
            TokenRole::Server
        } else {
            TokenRole::Client
        };
        Some(DaemonPath {
            name: a.name.clone(),
            role,
        })
    })
}

/// What `burrow admin daemons` shows of `d`: every path it uses (untruncated; the page
/// truncates), from its registration and its attachments, in order and without repeats.
pub(super) fn view(
    dir: &Directory,
    tenant: &TenantName,
    d: &DaemonRecord,
    live: &Live<'_>,
) -> DaemonView {
    let mut paths = BTreeSet::new();
    let mut online = false;
    if let Some(key) = &d.key {
        if let Some(uses) = (live.uses)(key) {
            online = true;
            paths.extend(uses);
        }
        paths.extend(attached_paths(dir, tenant, key));
    }
    DaemonView {
        name: d.name.clone(),
        key: d.key,
        online,
        paths: paths.into_iter().collect(),
        more_paths: 0,
    }
}

/// One page of `tenant`'s tree from the first path after `after`: at most [`MAX_TREE_PAGE`]
/// paths showing at most [`MAX_TREE_PAGE_ATTACHMENTS`] attachments together (a path shows
/// as many as are left, and counts the rest).
pub(super) fn tree(
    dir: &Directory,
    tenant: &TenantName,
    after: Option<ServiceName>,
    live: &Live<'_>,
) -> AdminAnswer {
    let mut rest = dir
        .paths_of(tenant)
        .filter(|p| after.as_ref().is_none_or(|a| p.name > *a));
    let mut room = MAX_TREE_PAGE_ATTACHMENTS;
    let paths: Vec<PathView> = rest
        .by_ref()
        .take(MAX_TREE_PAGE)
        .map(|p| {
            let all: Vec<AttachedView> = dir
                .attachments_to(tenant, &p.name)
                .filter_map(|a| {
                    let role = if a.attach.as_ref()?.exposes() {
                        TokenRole::Server
                    } else {
                        TokenRole::Client
                    };
                    let daemon = dir
                        .daemons_of(tenant)
                        .find(|d| d.key == Some(a.daemon))
                        .map_or(DaemonRef::Key(a.daemon), |d| {
                            DaemonRef::Name(d.name.clone())
                        });
                    Some(AttachedView {
                        daemon,
                        role,
                        online: (live.registered)(&a.daemon),
                    })
                })
                .collect();
            let shown = all.len().min(room);
            room -= shown;
            let more_attached = u32::try_from(all.len() - shown).unwrap_or(u32::MAX);
            PathView {
                name: p.name.clone(),
                fixed: p.fixed,
                pinned: u32::try_from(p.clients.len()).unwrap_or(u32::MAX),
                exposed_by: (live.exposed_by)(&p.name),
                max_connections: p.max_connections,
                connections: (live.connections)(&p.name),
                attached: all.into_iter().take(shown).collect(),
                more_attached,
            }
        })
        .collect();
    let more = rest.next().is_some();
    let quota: TenantQuota = dir.tenant(tenant).map(|t| t.limits).unwrap_or_default();
    let limits = TenantLimits {
        max_paths: u32::try_from(quota.paths()).unwrap_or(u32::MAX),
        max_daemons: u32::try_from(quota.daemons()).unwrap_or(u32::MAX),
        relay_bytes_per_sec: quota
            .relay_bytes_per_sec
            .unwrap_or(live.relay_bytes_per_sec),
    };
    AdminAnswer::Tree {
        tenant: tenant.to_string(),
        paths,
        more,
        limits,
    }
}

/// One page of the daemons online in `tenant` that no daemon entry binds, from the first key
/// after `after`, packed as a page of `daemons` is.
pub(super) fn unnamed(
    dir: &Directory,
    tenant: &TenantName,
    path: Option<ServiceName>,
    after: Option<PublicKey>,
    live: &Live<'_>,
) -> AdminAnswer {
    let bound: BTreeSet<PublicKey> = dir.daemons_of(tenant).filter_map(|d| d.key).collect();
    let rest = (live.online)()
        .into_iter()
        .filter(|k| !bound.contains(k) && after.is_none_or(|a| *k > a))
        .filter_map(|key| {
            let mut paths: BTreeSet<DaemonPath> = (live.uses)(&key)?.into_iter().collect();
            paths.extend(attached_paths(dir, tenant, &key));
            Some(UnnamedView {
                key,
                paths: paths.into_iter().collect(),
                more_paths: 0,
            })
        })
        .filter(|v| {
            path.as_ref()
                .is_none_or(|p| v.paths.iter().any(|u| u.name == *p))
        })
        .peekable();
    let (daemons, more) = page(rest, |v: &mut UnnamedView| {
        (&mut v.paths, &mut v.more_paths)
    });
    AdminAnswer::Unnamed { daemons, more }
}

/// One page of daemons from `rest`: at most [`MAX_DAEMON_PAGE`] of them and
/// [`MAX_DAEMON_PAGE_PATHS`] paths in all (a first daemon with more has its list cut, and
/// says how many more it has); `paths_of` reaches a view's path list and its count of the
/// rest. Whether more daemons follow.
pub(super) fn page<V>(
    mut rest: std::iter::Peekable<impl Iterator<Item = V>>,
    paths_of: impl Fn(&mut V) -> (&mut Vec<DaemonPath>, &mut u32),
) -> (Vec<V>, bool) {
    let (mut daemons, mut shown) = (Vec::new(), 0);
    while let Some(v) = rest.peek_mut() {
        let count = paths_of(v).0.len();
        let fits = daemons.is_empty() || shown + count <= MAX_DAEMON_PAGE_PATHS;
        if daemons.len() == MAX_DAEMON_PAGE || !fits {
            break;
        }
        let Some(mut v) = rest.next() else { break };
        let (paths, more_paths) = paths_of(&mut v);
        let total = paths.len();
        paths.truncate(MAX_DAEMON_PAGE_PATHS);
        *more_paths = u32::try_from(total - paths.len()).unwrap_or(u32::MAX);
        shown += paths.len();
        daemons.push(v);
    }
    let more = rest.next().is_some();
    (daemons, more)
}
