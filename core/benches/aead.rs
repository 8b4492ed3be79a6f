//! ChaCha20-Poly1305 candidates for the transport AEAD, side by side in one run: seal and open
//! of 1200- and 1452-byte packets (ciphertext plus tag, with burrow's 16-byte header as the
//! associated data), in place, one core.
//!
//! Run: `cargo bench -p burrow-core --bench aead` (add `-- --quick` for a short run). With
//! `--features bench-aws-lc` it also measures aws-lc-rs, which builds AWS-LC's C code (about a
//! minute, with the C compiler alone). Figures are medians over interleaved rounds, so every
//! candidate sees the same machine noise; ratios are to the RustCrypto crate.

// A benchmark measures wall time; the clock rule of core/clippy.toml is for the library.
#![allow(clippy::disallowed_methods)]

use std::time::Instant;

const HEADER: usize = 16;
const TAG: usize = 16;
const KEY: [u8; 32] = [3; 32];

fn nonce_bytes(counter: u64) -> [u8; 12] {
    let mut bytes = [0u8; 12];
    bytes[4..].copy_from_slice(&counter.to_le_bytes());
    bytes
}

/// One candidate: seals `buf` in place and returns the tag, or opens `sealed` into `out` (a
/// receiver's own buffer: the datagram it got is borrowed), the way each crate does it best.
trait Candidate {
    const NAME: &'static str;
    fn new(key: &[u8; 32]) -> Self;
    fn seal(&self, counter: u64, ad: &[u8], buf: &mut [u8]) -> [u8; TAG];
    fn open(&self, counter: u64, ad: &[u8], sealed: &[u8], tag: &[u8; TAG], out: &mut [u8])
    -> bool;
}

struct RustCrypto(chacha20poly1305::ChaCha20Poly1305);

impl Candidate for RustCrypto {
    const NAME: &'static str = "chacha20poly1305 0.11 (RustCrypto)";
    fn new(key: &[u8; 32]) -> Self {
        use chacha20poly1305::KeyInit;
        Self(chacha20poly1305::ChaCha20Poly1305::new(&(*key).into()))
    }
    fn seal(&self, counter: u64, ad: &[u8], buf: &mut [u8]) -> [u8; TAG] {
        use chacha20poly1305::aead::AeadInOut;
        self.0
            .encrypt_inout_detached(&nonce_bytes(counter).into(), ad, buf.into())
            .expect("seal")
            .into()
    }
    fn open(
        &self,
        counter: u64,
        ad: &[u8],
        sealed: &[u8],
        tag: &[u8; TAG],
        buf: &mut [u8],
    ) -> bool {
        use chacha20poly1305::aead::AeadInOut;
        buf.copy_from_slice(sealed);
        self.0
            .decrypt_inout_detached(&nonce_bytes(counter).into(), ad, buf.into(), &(*tag).into())
            .is_ok()
    }
}

struct Ring(ring::aead::LessSafeKey);

impl Candidate for Ring {
    const NAME: &'static str = "ring 0.17";
    fn new(key: &[u8; 32]) -> Self {
        use ring::aead::{CHACHA20_POLY1305, LessSafeKey, UnboundKey};
        Self(LessSafeKey::new(
            UnboundKey::new(&CHACHA20_POLY1305, key).expect("32-byte key"),
        ))
    }
    fn seal(&self, counter: u64, ad: &[u8], buf: &mut [u8]) -> [u8; TAG] {
        use ring::aead::{Aad, Nonce};
        let nonce = Nonce::assume_unique_for_key(nonce_bytes(counter));
        let tag = self
            .0
            .seal_in_place_separate_tag(nonce, Aad::from(ad), buf)
            .expect("seal");
        tag.as_ref().try_into().expect("16-byte tag")
    }
    fn open(
        &self,
        counter: u64,
        ad: &[u8],
        sealed: &[u8],
        tag: &[u8; TAG],
        buf: &mut [u8],
    ) -> bool {
        use ring::aead::{Aad, Nonce, Tag};
        buf.copy_from_slice(sealed);
        let nonce = Nonce::assume_unique_for_key(nonce_bytes(counter));
        self.0
            .open_in_place_separate_tag(nonce, Aad::from(ad), Tag::from(*tag), buf, 0..)
            .is_ok()
    }
}

#[cfg(feature = "bench-aws-lc")]
struct AwsLc(aws_lc_rs::aead::LessSafeKey);

#[cfg(feature = "bench-aws-lc")]
impl Candidate for AwsLc {
    const NAME: &'static str = "aws-lc-rs 1";
    fn new(key: &[u8; 32]) -> Self {
        use aws_lc_rs::aead::{CHACHA20_POLY1305, LessSafeKey, UnboundKey};
        Self(LessSafeKey::new(
            UnboundKey::new(&CHACHA20_POLY1305, key).expect("32-byte key"),
        ))
    }
    fn seal(&self, counter: u64, ad: &[u8], buf: &mut [u8]) -> [u8; TAG] {
        use aws_lc_rs::aead::{Aad, Nonce};
        let nonce = Nonce::assume_unique_for_key(nonce_bytes(counter));
        let tag = self
            .0
            .seal_in_place_separate_tag(nonce, Aad::from(ad), buf)
            .expect("seal");
        tag.as_ref().try_into().expect("16-byte tag")
    }
    fn open(
        &self,
        counter: u64,
        ad: &[u8],
        sealed: &[u8],
        tag: &[u8; TAG],
        out: &mut [u8],
    ) -> bool {
        use aws_lc_rs::aead::{Aad, Nonce};
        let nonce = Nonce::assume_unique_for_key(nonce_bytes(counter));
        // Out of place: aws-lc-rs decrypts from the borrowed datagram into our buffer.
        self.0
            .open_separate_gather(nonce, Aad::from(ad), sealed, tag, out)
            .is_ok()
    }
}

/// Seconds to seal `n` packets of `packet` bytes (header, ciphertext, tag) in place.
fn seal_round<C: Candidate>(c: &C, packet: usize, n: u64) -> f64 {
    let ad = [7u8; HEADER];
    let mut buf = vec![0x5Au8; packet - HEADER - TAG];
    let start = Instant::now();
    for i in 0..n {
        std::hint::black_box(c.seal(i, &ad, &mut buf));
    }
    std::hint::black_box(&buf);
    start.elapsed().as_secs_f64()
}

/// Seconds to open `n` packets from a borrowed datagram into the receiver's buffer (for the
/// in-place crates the copy into it is timed too, as the receiver pays it).
fn open_round<C: Candidate>(c: &C, packet: usize, n: u64) -> f64 {
    let ad = [7u8; HEADER];
    let mut sealed = vec![0x5Au8; packet - HEADER - TAG];
    let tag = c.seal(1, &ad, &mut sealed);
    let mut buf = vec![0u8; sealed.len()];
    let start = Instant::now();
    for _ in 0..n {
        assert!(c.open(1, &ad, &sealed, &tag, &mut buf), "opens");
    }
    std::hint::black_box(&buf);
    start.elapsed().as_secs_f64()
}

/// Checks that a candidate's output is the RustCrypto crate's, byte for byte.
fn same_wire<C: Candidate>(c: &C) {
    let reference = RustCrypto::new(&KEY);
    let mut ours = vec![0x42u8; 1000];
    let mut theirs = ours.clone();
    let tag = c.seal(99, b"header", &mut ours);
    assert_eq!(
        tag,
        reference.seal(99, b"header", &mut theirs),
        "{}",
        C::NAME
    );
    assert_eq!(ours, theirs, "{}", C::NAME);
    let mut opened = vec![0u8; 1000];
    assert!(
        c.open(99, b"header", &theirs, &tag, &mut opened),
        "{}",
        C::NAME
    );
    assert_eq!(opened, vec![0x42u8; 1000]);
    ours[0] ^= 1;
    assert!(
        !c.open(99, b"header", &ours, &tag, &mut opened),
        "{}",
        C::NAME
    );
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

/// Median seal and open seconds of one candidate, `rounds` rounds of `n` packets.
#[derive(Default)]
struct Samples {
    seal: Vec<f64>,
    open: Vec<f64>,
}

fn sample<C: Candidate>(c: &C, s: &mut Samples, packet: usize, n: u64) {
    s.seal.push(seal_round(c, packet, n));
    s.open.push(open_round(c, packet, n));
}

fn main() {
    let quick = std::env::args().any(|a| a == "--quick");
    let (rounds, n) = if quick { (3, 50_000) } else { (7, 200_000) };
    let rust_crypto = RustCrypto::new(&KEY);
    let ring = Ring::new(&KEY);
    same_wire(&ring);
    #[cfg(feature = "bench-aws-lc")]
    let aws = AwsLc::new(&KEY);
    #[cfg(feature = "bench-aws-lc")]
    same_wire(&aws);

    println!(
        "burrow AEAD bench: ChaCha20-Poly1305 in place, {n} packets per round, median of {rounds} interleaved rounds, one core"
    );
    println!(
        "| candidate | packet | seal MB/s | open MB/s | seal ns/pkt | open ns/pkt | seal x | open x |"
    );
    println!("| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |");
    for packet in [1200usize, 1452] {
        let mut names = vec![RustCrypto::NAME, Ring::NAME];
        let mut samples: Vec<Samples> = vec![Samples::default(), Samples::default()];
        #[cfg(feature = "bench-aws-lc")]
        {
            names.push(AwsLc::NAME);
            samples.push(Samples::default());
        }
        for _ in 0..rounds {
            sample(&rust_crypto, &mut samples[0], packet, n);
            sample(&ring, &mut samples[1], packet, n);
            #[cfg(feature = "bench-aws-lc")]
            sample(&aws, &mut samples[2], packet, n);
        }
        let medians: Vec<(f64, f64)> = samples
            .into_iter()
            .map(|s| (median(s.seal), median(s.open)))
            .collect();
        let (base_seal, base_open) = medians[0];
        let bytes = (packet as u64 * n) as f64;
        for (name, (seal, open)) in names.iter().zip(&medians) {
            println!(
                "| {name} | {packet} | {:.0} | {:.0} | {:.0} | {:.0} | {:.2} | {:.2} |",
                bytes / seal / 1e6,
                bytes / open / 1e6,
                seal / n as f64 * 1e9,
                open / n as f64 * 1e9,
                base_seal / seal,
                base_open / open,
            );
        }
        names.clear();
    }
}
