//! Interoperability with `snow`, a reference implementation of the Noise framework: our IK
//! handshake and transport must complete against it in both roles, byte for byte.

use super::keys::SecretKey;
use super::noise::{self, TAG_LEN, TransportKeys};

const PROLOGUE: &[u8] = b"burrow interop prologue";

fn builder() -> snow::Builder<'static> {
    snow::Builder::new(
        noise::PROTOCOL_NAME
            .parse()
            .expect("snow knows the protocol"),
    )
}

fn key(byte: u8) -> SecretKey {
    // Distinct, non-trivial bytes per key.
    SecretKey::from_bytes(std::array::from_fn(|i| {
        byte.wrapping_mul(31).wrapping_add(i as u8)
    }))
}

/// Sends `count` transport messages each way with counters 0, 1, 2, ...: ours sealed, snow's
/// `write_message`, and back.
fn exchange_transport(ours: &TransportKeys, theirs: &snow::StatelessTransportState) {
    for counter in 0..5u64 {
        // Ours -> snow.
        let plaintext = format!("ours #{counter}").into_bytes();
        let mut packet = plaintext.clone();
        let tag = ours.send.seal_in_place(counter, &[], &mut packet);
        packet.extend_from_slice(&tag);
        let mut out = vec![0; packet.len()];
        let n = theirs
            .read_message(counter, &packet, &mut out)
            .expect("snow opens ours");
        assert_eq!(&out[..n], &plaintext[..]);

        // Snow -> ours.
        let plaintext = format!("snow #{counter} with more bytes").into_bytes();
        let mut packet = vec![0; plaintext.len() + TAG_LEN];
        let n = theirs
            .write_message(counter, &plaintext, &mut packet)
            .expect("snow seals");
        assert_eq!(n, packet.len());
        let (body, tag) = packet.split_at_mut(plaintext.len());
        let tag: [u8; TAG_LEN] = (&*tag).try_into().unwrap();
        ours.recv
            .open_in_place(counter, &[], body, &tag)
            .expect("we open snow's");
        assert_eq!(body, &plaintext[..]);
    }
    // A counter out of order works too (stateless transport).
    let mut packet = b"late".to_vec();
    let tag = ours.send.seal_in_place(1000, &[], &mut packet);
    packet.extend_from_slice(&tag);
    let mut out = [0; 16];
    assert_eq!(theirs.read_message(1000, &packet, &mut out).unwrap(), 4);
}

#[test]
fn our_initiator_with_snow_responder() {
    let (ini, resp, eph) = (key(1), key(2), key(3));
    let resp_secret = resp.to_bytes();
    let snow_eph = key(4).to_bytes();
    let mut snow_resp = builder()
        .local_private_key(&resp_secret)
        .unwrap()
        .prologue(PROLOGUE)
        .unwrap()
        .fixed_ephemeral_key_for_testing_only(&snow_eph)
        .build_responder()
        .unwrap();

    let mut msg1 = Vec::new();
    let pending = noise::initiate(
        &ini,
        &resp.public_key(),
        &eph,
        PROLOGUE,
        b"hello snow",
        &mut msg1,
    );
    let mut payload = [0u8; 100];
    let n = snow_resp
        .read_message(&msg1, &mut payload)
        .expect("snow reads message 1");
    assert_eq!(&payload[..n], b"hello snow");
    assert_eq!(
        snow_resp.get_remote_static().unwrap(),
        ini.public_key().as_bytes()
    );

    let mut msg2 = vec![0u8; 200];
    let n = snow_resp.write_message(b"hi burrow", &mut msg2).unwrap();
    msg2.truncate(n);
    let mut got = Vec::new();
    let ours = pending
        .read_response(&msg2, &mut got)
        .expect("we read snow's message 2");
    assert_eq!(got, b"hi burrow");
    assert_eq!(&ours.handshake_hash[..], snow_resp.get_handshake_hash());

    let theirs = snow_resp.into_stateless_transport_mode().unwrap();
    exchange_transport(&ours, &theirs);
}

#[test]
fn snow_initiator_with_our_responder() {
    let (ini, resp, eph) = (key(5), key(6), key(7));
    let ini_secret = ini.to_bytes();
    let resp_public = *resp.public_key().as_bytes();
    let snow_eph = key(8).to_bytes();
    let mut snow_ini = builder()
        .local_private_key(&ini_secret)
        .unwrap()
        .remote_public_key(&resp_public)
        .unwrap()
        .prologue(PROLOGUE)
        .unwrap()
        .fixed_ephemeral_key_for_testing_only(&snow_eph)
        .build_initiator()
        .unwrap();

    let mut msg1 = vec![0u8; 200];
    let n = snow_ini.write_message(b"from snow", &mut msg1).unwrap();
    msg1.truncate(n);
    assert_eq!(n, noise::INITIATION_OVERHEAD + 9);
    let responder = noise::respond(&resp, PROLOGUE, &msg1).expect("we read snow's message 1");
    assert_eq!(responder.remote_static(), ini.public_key());
    assert_eq!(responder.payload(), b"from snow");

    let mut msg2 = Vec::new();
    let ours = responder.write_response(&eph, b"from burrow", &mut msg2);
    assert_eq!(msg2.len(), noise::RESPONSE_OVERHEAD + 11);
    let mut payload = [0u8; 100];
    let n = snow_ini
        .read_message(&msg2, &mut payload)
        .expect("snow reads message 2");
    assert_eq!(&payload[..n], b"from burrow");
    assert_eq!(&ours.handshake_hash[..], snow_ini.get_handshake_hash());

    let theirs = snow_ini.into_stateless_transport_mode().unwrap();
    exchange_transport(&ours, &theirs);
}

#[test]
fn empty_payloads_and_rekey_match_snow() {
    let (ini, resp) = (key(9), key(10));
    let resp_secret = resp.to_bytes();
    let mut snow_resp = builder()
        .local_private_key(&resp_secret)
        .unwrap()
        .prologue(b"")
        .unwrap()
        .build_responder()
        .unwrap();
    let mut msg1 = Vec::new();
    let pending = noise::initiate(&ini, &resp.public_key(), &key(11), b"", b"", &mut msg1);
    assert_eq!(msg1.len(), noise::INITIATION_OVERHEAD);
    assert_eq!(snow_resp.read_message(&msg1, &mut []).unwrap(), 0);
    let mut msg2 = vec![0u8; noise::RESPONSE_OVERHEAD];
    snow_resp.write_message(&[], &mut msg2).unwrap();
    let ours = pending.read_response(&msg2, &mut Vec::new()).unwrap();
    let mut theirs = snow_resp.into_stateless_transport_mode().unwrap();

    theirs.rekey_incoming();
    theirs.rekey_outgoing();
    let ours = TransportKeys {
        send: ours.send.rekey(),
        recv: ours.recv.rekey(),
        handshake_hash: ours.handshake_hash,
    };
    exchange_transport(&ours, &theirs);
}

#[test]
fn snow_refuses_tampered_output_and_we_refuse_snows() {
    let (ini, resp) = (key(12), key(13));
    let mut msg1 = Vec::new();
    let _ = noise::initiate(
        &ini,
        &resp.public_key(),
        &key(14),
        PROLOGUE,
        b"x",
        &mut msg1,
    );
    msg1[40] ^= 1;
    let resp_secret = resp.to_bytes();
    let mut snow_resp = builder()
        .local_private_key(&resp_secret)
        .unwrap()
        .prologue(PROLOGUE)
        .unwrap()
        .build_responder()
        .unwrap();
    assert!(snow_resp.read_message(&msg1, &mut [0; 100]).is_err());

    let ini_secret = ini.to_bytes();
    let resp_public = *resp.public_key().as_bytes();
    let mut snow_ini = builder()
        .local_private_key(&ini_secret)
        .unwrap()
        .remote_public_key(&resp_public)
        .unwrap()
        .prologue(PROLOGUE)
        .unwrap()
        .build_initiator()
        .unwrap();
    let mut msg1 = vec![0u8; 200];
    let n = snow_ini.write_message(b"x", &mut msg1).unwrap();
    msg1.truncate(n);
    *msg1.last_mut().unwrap() ^= 1;
    assert_eq!(
        noise::respond(&resp, PROLOGUE, &msg1).unwrap_err(),
        noise::HandshakeError::Decrypt
    );
}
