//! What a worker mines: the nonce it has hashed, made from rng's random bytes, and the coin
//! rule. Release 1.0 made the nonce badly; 1.1 fixes it; both ways stay here
//! ([`Seeding`]), and the build picks one ([`Seeding::BUILT`]).

/// How many random bytes a worker asks rng for, as the classic dockercoins does.
pub const RANDOM_BYTES: usize = 32;

/// How the worker turns rng's random bytes into the nonce it has hashed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Seeding {
    /// Release 1.0's bug: the first 4 bytes seed the portable `rand()` printed in the C
    /// standard (a linear congruential generator, `RAND_MAX` 32767), and the nonce is one
    /// draw of it, in decimal. The other 28 bytes are thrown away and the generator has
    /// 32,768 outputs, so there are at most 32,768 nonces and about 2,048 coins among them:
    /// after a few hundred coins the workers mostly find coins found before (the
    /// duplicate rate on the webui climbs). Four bytes alone would be 2³² nonces, too many
    /// for repeats to show in a demo; the 15-bit generator is what makes them show.
    FirstFourBytes,
    /// Release 1.1's fix: the nonce is all the random bytes, 256 bits of them, so a coin is
    /// never found twice.
    AllBytes,
}

impl Seeding {
    /// The seeding this binary was built with: [`Seeding::AllBytes`] with the cargo feature
    /// `fixed-seed` (release 1.1), else [`Seeding::FirstFourBytes`] (release 1.0).
    pub const BUILT: Seeding =
        if cfg!(feature = "fixed-seed") { Seeding::AllBytes } else { Seeding::FirstFourBytes };

    /// How the webui and the logs name it.
    pub fn describe(self) -> &'static str {
        match self {
            Seeding::FirstFourBytes => "nonce from rand() seeded with the first 4 random bytes",
            Seeding::AllBytes => "nonce is all the random bytes",
        }
    }
}

/// The nonce the worker has hashed, made from `random` (rng's answer).
pub fn nonce(random: &[u8], seeding: Seeding) -> Vec<u8> {
    match seeding {
        Seeding::AllBytes => random.to_vec(),
        Seeding::FirstFourBytes => {
            let mut seed = [0u8; 4];
            let n = random.len().min(4);
            seed[..n].copy_from_slice(&random[..n]);
            c_rand(u32::from_le_bytes(seed)).to_string().into_bytes()
        }
    }
}

/// `srand(seed); rand()` with the C standard's portable example: `0..=32767`.
fn c_rand(seed: u32) -> u16 {
    let next = seed.wrapping_mul(1_103_515_245).wrapping_add(12_345);
    ((next / 65_536) % 32_768) as u16
}

/// A coin is a hash (lowercase hex) that starts with `0`: one hash in 16.
pub fn is_coin(hash: &str) -> bool {
    hash.starts_with('0')
}

/// The sha256 of `data` in lowercase hex: what hasher answers.
pub fn sha256_hex(data: &[u8]) -> String {
    use sha2::Digest;
    hex::encode(sha2::Sha256::digest(data))
}

/// Whether `s` is a sha256 in lowercase hex, as hasher answers it.
pub fn is_sha256_hex(s: &str) -> bool {
    s.len() == 64 && s.bytes().all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
}

#[cfg(test)]
mod tests {
    use std::collections::HashSet;

    use super::*;

    /// 40,000 distinct 32-byte "answers of rng", the same on every run.
    fn answers() -> impl Iterator<Item = Vec<u8>> {
        (0u32..40_000).map(|i| hex::decode(sha256_hex(&i.to_le_bytes())).unwrap())
    }

    /// (distinct nonces, coins, coins found before) over [`answers`].
    fn mine(seeding: Seeding) -> (usize, usize, usize) {
        let (mut nonces, mut seen) = (HashSet::new(), HashSet::new());
        let (mut coins, mut again) = (0, 0);
        for random in answers() {
            let nonce = nonce(&random, seeding);
            let hash = sha256_hex(&nonce);
            nonces.insert(nonce);
            if is_coin(&hash) {
                coins += 1;
                if !seen.insert(hash) {
                    again += 1;
                }
            }
        }
        (nonces.len(), coins, again)
    }

    #[test]
    fn release_1_0_finds_the_same_coins_again() {
        let (nonces, coins, again) = mine(Seeding::FirstFourBytes);
        // 40,000 answers into at most 32,768 nonces: repeats are certain, not likely
        assert!(nonces <= 32_768, "{nonces} nonces");
        assert!(coins > 1_000, "{coins} coins");
        assert!(again * 10 > coins, "{again} of {coins} coins found before");
    }

    #[test]
    fn release_1_1_never_finds_a_coin_twice() {
        let (nonces, coins, again) = mine(Seeding::AllBytes);
        assert_eq!(nonces, 40_000);
        assert!(coins > 2_000, "{coins} coins");
        assert_eq!(again, 0);
    }

    #[test]
    fn the_1_0_nonce_depends_on_the_first_four_bytes_alone() {
        let a = [1, 2, 3, 4, 5, 6, 7, 8];
        let b = [1, 2, 3, 4, 9, 9, 9, 9];
        assert_eq!(nonce(&a, Seeding::FirstFourBytes), nonce(&b, Seeding::FirstFourBytes));
        assert_ne!(nonce(&a, Seeding::AllBytes), nonce(&b, Seeding::AllBytes));
        assert_eq!(nonce(&a, Seeding::AllBytes), a);
        // short answers are padded, not a panic
        assert_eq!(nonce(&[], Seeding::FirstFourBytes), nonce(&[0, 0, 0, 0], Seeding::FirstFourBytes));
    }

    #[test]
    fn c_rand_is_the_c_standards_example() {
        // srand(1); rand() with the example generator of the C standard
        assert_eq!(c_rand(1), 16_838);
        assert!((0..100_000u32).map(|s| c_rand(s.wrapping_mul(2_654_435_761))).all(|r| r <= 32_767));
    }

    #[test]
    fn a_coin_is_a_hash_starting_with_zero() {
        for (hash, coin) in [("0abc", true), ("00", true), ("1000", false), ("f0", false), ("", false)] {
            assert_eq!(is_coin(hash), coin, "{hash:?}");
        }
    }

    #[test]
    fn hashes_are_lowercase_hex_sha256() {
        assert_eq!(sha256_hex(b""), "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855");
        assert_eq!(sha256_hex(b"abc"), "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
        assert!(is_sha256_hex(&sha256_hex(b"abc")));
        assert!(!is_sha256_hex(&sha256_hex(b"abc").to_uppercase()));
        assert!(!is_sha256_hex("0abc"));
    }
}
