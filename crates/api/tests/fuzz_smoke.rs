//! A brief, stable-toolchain run of the fuzz harness (`strata_api::fuzz::request`): known
//! request bodies and patches, mutated by a seeded generator, go through decoding,
//! admission and patching for every resource. A panic anywhere fails the test. The
//! coverage-guided run is `cargo +nightly fuzz run request` in `fuzz/`.

use strata_api::fuzz::request;
use strata_api::resources::RESOURCES;

/// Bodies and patches the mutations start from.
const SEEDS: &[&str] = &[
    r#"{"apiVersion":"v1","kind":"Pod","metadata":{"name":"web","labels":{"app":"web"}},"spec":{"containers":[{"name":"c","image":"busybox","ports":[{"containerPort":80}],"resources":{"limits":{"memory":"64Mi","cpu":"500m"}}}]}}"#,
    r#"{"apiVersion":"apps/v1","kind":"Deployment","metadata":{"name":"d"},"spec":{"replicas":3,"selector":{"matchLabels":{"app":"d"}},"strategy":{"type":"RollingUpdate","rollingUpdate":{"maxSurge":"25%","maxUnavailable":1}},"template":{"metadata":{"labels":{"app":"d"}},"spec":{"containers":[{"name":"c","image":"x"}]}}}}"#,
    r#"{"apiVersion":"batch/v1","kind":"Job","metadata":{"name":"j"},"spec":{"completions":2,"parallelism":2,"backoffLimit":1,"template":{"spec":{"restartPolicy":"Never","containers":[{"name":"c","image":"x"}]}}}}"#,
    r#"{"apiVersion":"v1","kind":"Service","metadata":{"name":"s"},"spec":{"selector":{"app":"d"},"ports":[{"port":80,"targetPort":"http"}]}}"#,
    r#"[{"op":"add","path":"/metadata/labels","value":{"a":"b"}},{"op":"replace","path":"/spec/replicas","value":5},{"op":"remove","path":"/metadata/x~1y"}]"#,
    r#"{"metadata":{"labels":{"a":null}},"spec":{"containers":[{"name":"c","image":"y"}],"$setElementOrder/containers":[{"name":"c"}]}}"#,
    r#"{"spec":{"template":{"spec":{"containers":[{"$patch":"delete","name":"c"}]}}}}"#,
];

/// xorshift64*: reproducible, no dependency.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    fn below(&mut self, n: usize) -> usize {
        (self.next() % n.max(1) as u64) as usize
    }
}

/// Bytes that matter to JSON and to patch directives.
const INTERESTING: &[u8] = b"{}[]\":,-0123456789enulltrf$/~\\ \x00\xff";

fn mutate(rng: &mut Rng, seed: &[u8]) -> Vec<u8> {
    let mut out = seed.to_vec();
    for _ in 0..=rng.below(4) {
        let at = rng.below(out.len() + 1);
        match rng.below(4) {
            0 if at < out.len() => {
                let end = (at + 1 + rng.below(8)).min(out.len());
                out.drain(at..end);
            }
            1 => out.insert(at, INTERESTING[rng.below(INTERESTING.len())]),
            2 if at < out.len() => out[at] = INTERESTING[rng.below(INTERESTING.len())],
            _ => {
                // Splice in a piece of another seed: valid structure in odd places.
                let other = SEEDS[rng.below(SEEDS.len())].as_bytes();
                let from = rng.below(other.len());
                let to = (from + rng.below(40)).min(other.len());
                out.splice(at..at, other[from..to].iter().copied());
            }
        }
    }
    out
}

#[test]
fn mutated_bodies_never_panic_the_decoding_path() {
    let mut rng = Rng(0x5EED_5EED_1234_5678);
    let mut runs = 0;
    for seed in SEEDS {
        // Unmutated, against every resource and mode.
        for pick in 0..RESOURCES.len() {
            for mode in 0..9u8 {
                let mut data = vec![u8::try_from(pick % 256).unwrap_or(0), mode];
                data.extend_from_slice(seed.as_bytes());
                request(&data);
                runs += 1;
            }
        }
    }
    for _ in 0..20_000 {
        let seed = SEEDS[rng.below(SEEDS.len())].as_bytes();
        let mut data = vec![(rng.next() & 0xff) as u8, (rng.next() & 0xff) as u8];
        data.extend(mutate(&mut rng, seed));
        request(&data);
        runs += 1;
    }
    assert!(runs > 20_000, "the smoke run ran {runs} inputs");
}
