//! Password hashing (DESIGN.md §4): Argon2id in PHC strings, on a fixed pool of worker threads
//! (one per core), each with its Argon2 memory allocated once and reused, fed by a bounded FIFO
//! queue. A login storm therefore never starves other requests and memory stays flat; past the
//! queue bound callers get [`PasswordError::Busy`] at once and the page answers "busy, retry".
//!
//! Passwords are NFKC-normalised before hashing, so the same password typed on two keyboards
//! (composed or decomposed accents) is the same password. More than [`MAX_PASSWORD_BYTES`] is
//! refused before any hashing.
//!
//! The PHC string of Argon2id (`$argon2id$v=19$m=…,t=…,p=…$salt$hash`, standard base64 without
//! padding) is formatted and parsed here; it is checked against the reference test vectors.

use std::fmt;
use std::sync::mpsc::{Receiver, SyncSender, TrySendError, sync_channel};
use std::sync::{Arc, Mutex};

use argon2::{Algorithm, Argon2, Block, Params, Version};
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD_NO_PAD;
use tokio::sync::oneshot;
use unicode_normalization::UnicodeNormalization as _;
use zeroize::Zeroizing;

use crate::entropy::{Entropy, EntropyExt};

/// Longest password accepted, in bytes after normalisation (DESIGN.md §4).
pub const MAX_PASSWORD_BYTES: usize = 1024;
const SALT_BYTES: usize = 16;
const OUTPUT_BYTES: usize = 32;
/// Largest memory cost accepted from a stored hash (4 GiB), so a tampered row cannot make a
/// worker allocate without bound.
const MAX_STORED_M_COST: u32 = 4 * 1024 * 1024;

/// Argon2id cost parameters.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HashParams {
    /// Memory in KiB (`m`).
    pub memory_kib: u32,
    /// Passes (`t`).
    pub iterations: u32,
    /// Lanes (`p`).
    pub parallelism: u32,
}

impl HashParams {
    fn argon2(&self) -> Result<Argon2<'static>, PasswordError> {
        let params = Params::new(
            self.memory_kib,
            self.iterations,
            self.parallelism,
            Some(OUTPUT_BYTES),
        )
        .map_err(|e| PasswordError::Malformed(format!("Argon2 parameters: {e}")))?;
        Ok(Argon2::new(Algorithm::Argon2id, Version::V0x13, params))
    }

    fn block_count(&self) -> Result<usize, PasswordError> {
        Ok(self.argon2()?.params().block_count())
    }
}

/// Why a password operation did not give an answer.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PasswordError {
    #[error("the password is longer than {MAX_PASSWORD_BYTES} bytes")]
    TooLong,
    #[error("too many password checks are waiting; try again in a moment")]
    Busy,
    #[error("stored password hash is malformed: {0}")]
    Malformed(String),
    #[error("the password hashing workers have stopped")]
    Stopped,
}

/// The outcome of a verification.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verification {
    /// The password is right; `needs_rehash` when the stored parameters differ from the
    /// configured ones (rehash on login).
    Match {
        needs_rehash: bool,
    },
    Mismatch,
}

/// A parsed Argon2id PHC string.
#[derive(Clone, PartialEq, Eq)]
pub struct PhcHash {
    pub params: HashParams,
    pub salt: Vec<u8>,
    pub hash: Vec<u8>,
}

impl fmt::Debug for PhcHash {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PhcHash")
            .field("params", &self.params)
            .finish_non_exhaustive()
    }
}

impl PhcHash {
    /// Formats as `$argon2id$v=19$m=M,t=T,p=P$SALT$HASH`.
    pub fn to_phc(&self) -> String {
        format!(
            "$argon2id$v=19$m={},t={},p={}${}${}",
            self.params.memory_kib,
            self.params.iterations,
            self.params.parallelism,
            STANDARD_NO_PAD.encode(&self.salt),
            STANDARD_NO_PAD.encode(&self.hash)
        )
    }

    /// Parses an Argon2id (version 19) PHC string; anything else is malformed.
    pub fn parse(phc: &str) -> Result<Self, PasswordError> {
        let malformed = |why: &str| PasswordError::Malformed(why.to_string());
        let mut parts = phc.split('$');
        if parts.next() != Some("") || parts.next() != Some("argon2id") {
            return Err(malformed("not an argon2id hash"));
        }
        if parts.next() != Some("v=19") {
            return Err(malformed("not Argon2 version 19"));
        }
        let params = parts.next().ok_or_else(|| malformed("no parameters"))?;
        let mut memory_kib = None;
        let mut iterations = None;
        let mut parallelism = None;
        for pair in params.split(',') {
            let (key, value) = pair
                .split_once('=')
                .ok_or_else(|| malformed("bad parameter"))?;
            let value: u32 = value
                .parse()
                .map_err(|_| malformed("bad parameter value"))?;
            match key {
                "m" => memory_kib = Some(value),
                "t" => iterations = Some(value),
                "p" => parallelism = Some(value),
                _ => return Err(malformed("unknown parameter")),
            }
        }
        let params = HashParams {
            memory_kib: memory_kib.ok_or_else(|| malformed("no m"))?,
            iterations: iterations.ok_or_else(|| malformed("no t"))?,
            parallelism: parallelism.ok_or_else(|| malformed("no p"))?,
        };
        if params.memory_kib > MAX_STORED_M_COST {
            return Err(malformed("memory cost too large"));
        }
        let salt = STANDARD_NO_PAD
            .decode(parts.next().ok_or_else(|| malformed("no salt"))?)
            .map_err(|_| malformed("salt is not base64"))?;
        let hash = STANDARD_NO_PAD
            .decode(parts.next().ok_or_else(|| malformed("no hash"))?)
            .map_err(|_| malformed("hash is not base64"))?;
        if parts.next().is_some() || hash.len() < 16 || salt.len() < 8 {
            return Err(malformed("wrong shape"));
        }
        Ok(Self { params, salt, hash })
    }
}

/// NFKC-normalises a password and checks its size (DESIGN.md §4).
pub fn normalise(password: &str) -> Result<Zeroizing<String>, PasswordError> {
    // Security: the size check comes first, on the raw input, so a huge body costs nothing.
    if password.len() > 4 * MAX_PASSWORD_BYTES {
        return Err(PasswordError::TooLong);
    }
    let normalised = Zeroizing::new(password.nfkc().collect::<String>());
    if normalised.len() > MAX_PASSWORD_BYTES {
        return Err(PasswordError::TooLong);
    }
    Ok(normalised)
}

enum Job {
    Hash {
        password: Zeroizing<String>,
        salt: [u8; SALT_BYTES],
        reply: oneshot::Sender<Result<String, PasswordError>>,
    },
    Verify {
        password: Zeroizing<String>,
        stored: PhcHash,
        reply: oneshot::Sender<Result<Verification, PasswordError>>,
    },
}

/// The hashing pool. Cloning shares it.
#[derive(Clone)]
pub struct PasswordHasher {
    queue: SyncSender<Job>,
    params: HashParams,
    entropy: Arc<dyn Entropy>,
    /// A hash of a random password with the configured parameters: unknown identifiers are
    /// verified against it so that they cost the same as known ones.
    dummy: Arc<PhcHash>,
    /// The queue's receiving end, shared with the workers; the pool owns it so that the queue
    /// exists as long as the pool does.
    _jobs: Arc<Mutex<Receiver<Job>>>,
}

impl fmt::Debug for PasswordHasher {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PasswordHasher")
            .field("params", &self.params)
            .finish_non_exhaustive()
    }
}

impl PasswordHasher {
    /// Starts `workers` threads (one per core in production) behind a queue of `queue_bound`
    /// waiting jobs.
    pub fn start(
        params: HashParams,
        workers: usize,
        queue_bound: usize,
        entropy: Arc<dyn Entropy>,
    ) -> Result<Self, PasswordError> {
        let blocks = params.block_count()?;
        let argon2 = params.argon2()?;
        let (queue, jobs) = sync_channel::<Job>(queue_bound);
        let jobs = Arc::new(Mutex::new(jobs));
        for index in 0..workers {
            let jobs = jobs.clone();
            let argon2 = argon2.clone();
            std::thread::Builder::new()
                .name(format!("argon2-{index}"))
                .spawn(move || worker(&jobs, &argon2, params, blocks))
                .map_err(|_| PasswordError::Stopped)?;
        }
        // The dummy hash is computed once, here, with the same parameters.
        let mut memory = vec![Block::default(); blocks];
        let salt = entropy.bytes::<SALT_BYTES>();
        let mut hash = vec![0u8; OUTPUT_BYTES];
        argon2
            .hash_password_into_with_memory(&entropy.bytes::<32>(), &salt, &mut hash, &mut memory)
            .map_err(|e| PasswordError::Malformed(e.to_string()))?;
        let dummy = Arc::new(PhcHash {
            params,
            salt: salt.to_vec(),
            hash,
        });
        Ok(Self {
            queue,
            params,
            entropy,
            dummy,
            _jobs: jobs,
        })
    }

    pub fn params(&self) -> HashParams {
        self.params
    }

    fn submit(&self, job: Job) -> Result<(), PasswordError> {
        match self.queue.try_send(job) {
            Ok(()) => Ok(()),
            Err(TrySendError::Full(_)) => Err(PasswordError::Busy),
            Err(TrySendError::Disconnected(_)) => Err(PasswordError::Stopped),
        }
    }

    /// Hashes a new password (a fresh 128-bit salt) into a PHC string.
    pub async fn hash(&self, password: &str) -> Result<String, PasswordError> {
        let password = normalise(password)?;
        let (reply, answer) = oneshot::channel();
        self.submit(Job::Hash {
            password,
            salt: self.entropy.bytes::<SALT_BYTES>(),
            reply,
        })?;
        answer.await.map_err(|_| PasswordError::Stopped)?
    }

    /// Verifies a password against a stored PHC string.
    pub async fn verify(
        &self,
        password: &str,
        stored: &str,
    ) -> Result<Verification, PasswordError> {
        let password = normalise(password)?;
        let stored = PhcHash::parse(stored)?;
        self.verify_parsed(password, stored).await
    }

    /// Spends the same effort as a real verification, for an identifier with no password (no
    /// account, or not activated), and always answers [`Verification::Mismatch`].
    pub async fn verify_dummy(&self, password: &str) -> Result<Verification, PasswordError> {
        let password = normalise(password)?;
        self.verify_parsed(password, (*self.dummy).clone()).await?;
        Ok(Verification::Mismatch)
    }

    async fn verify_parsed(
        &self,
        password: Zeroizing<String>,
        stored: PhcHash,
    ) -> Result<Verification, PasswordError> {
        let (reply, answer) = oneshot::channel();
        self.submit(Job::Verify {
            password,
            stored,
            reply,
        })?;
        answer.await.map_err(|_| PasswordError::Stopped)?
    }
}

fn worker(
    jobs: &Mutex<Receiver<Job>>,
    argon2: &Argon2<'static>,
    params: HashParams,
    blocks: usize,
) {
    // Allocated once per worker, at its first job, and reused for every hash with the
    // configured parameters: an idle node holds no Argon2 memory, a busy one exactly
    // `workers × m_cost`.
    let mut memory: Vec<Block> = Vec::new();
    loop {
        let job = {
            let Ok(receiver) = jobs.lock() else { return };
            match receiver.recv() {
                Ok(job) => job,
                Err(_) => return,
            }
        };
        if memory.is_empty() {
            memory = vec![Block::default(); blocks];
        }
        match job {
            Job::Hash {
                password,
                salt,
                reply,
            } => {
                let mut hash = vec![0u8; OUTPUT_BYTES];
                let result = argon2
                    .hash_password_into_with_memory(
                        password.as_bytes(),
                        &salt,
                        &mut hash,
                        &mut memory,
                    )
                    .map(|()| {
                        PhcHash {
                            params,
                            salt: salt.to_vec(),
                            hash,
                        }
                        .to_phc()
                    })
                    .map_err(|e| PasswordError::Malformed(e.to_string()));
                let _ = reply.send(result);
            }
            Job::Verify {
                password,
                stored,
                reply,
            } => {
                let _ = reply.send(verify_with(argon2, params, &mut memory, &password, &stored));
            }
        }
    }
}

fn verify_with(
    argon2: &Argon2<'static>,
    params: HashParams,
    memory: &mut [Block],
    password: &str,
    stored: &PhcHash,
) -> Result<Verification, PasswordError> {
    let mut computed = Zeroizing::new(vec![0u8; stored.hash.len()]);
    let needs_rehash = stored.params != params || stored.hash.len() != OUTPUT_BYTES;
    if needs_rehash {
        // An older hash: its own parameters, its own (temporary) memory.
        let other = Argon2::new(
            Algorithm::Argon2id,
            Version::V0x13,
            Params::new(
                stored.params.memory_kib,
                stored.params.iterations,
                stored.params.parallelism,
                Some(stored.hash.len()),
            )
            .map_err(|e| PasswordError::Malformed(e.to_string()))?,
        );
        let mut own = vec![Block::default(); other.params().block_count()];
        other
            .hash_password_into_with_memory(
                password.as_bytes(),
                &stored.salt,
                &mut computed,
                &mut own,
            )
            .map_err(|e| PasswordError::Malformed(e.to_string()))?;
    } else {
        argon2
            .hash_password_into_with_memory(
                password.as_bytes(),
                &stored.salt,
                &mut computed,
                memory,
            )
            .map_err(|e| PasswordError::Malformed(e.to_string()))?;
    }
    // Security: constant-time comparison of the digests.
    let equal = aws_lc_rs::constant_time::verify_slices_are_equal(&computed, &stored.hash).is_ok();
    Ok(if equal {
        Verification::Match { needs_rehash }
    } else {
        Verification::Mismatch
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::entropy::SeededEntropy;

    /// Reference vector of the Argon2 specification's implementation (phc-winner-argon2):
    /// password "password", salt "somesalt".
    const REFERENCE: &str =
        "$argon2id$v=19$m=256,t=2,p=1$c29tZXNhbHQ$nf65EOgLrQMR/uIPnA4rEsF5h7TKyQwu9U1bMCHGi/4";

    fn small() -> HashParams {
        HashParams {
            memory_kib: 256,
            iterations: 2,
            parallelism: 1,
        }
    }

    fn pool(params: HashParams, workers: usize, queue: usize) -> PasswordHasher {
        PasswordHasher::start(params, workers, queue, Arc::new(SeededEntropy::new(9))).unwrap()
    }

    #[test]
    fn phc_strings_round_trip_and_match_the_reference_vector() {
        let parsed = PhcHash::parse(REFERENCE).unwrap();
        assert_eq!(parsed.params, small());
        assert_eq!(parsed.salt, b"somesalt");
        assert_eq!(parsed.to_phc(), REFERENCE);
        for bad in [
            "",
            "$argon2i$v=19$m=256,t=2,p=1$c29tZXNhbHQ$nf65EOgLrQMR/uIPnA4rEsF5h7TKyQwu9U1bMCHGi/4",
            "$argon2id$v=16$m=256,t=2,p=1$c29tZXNhbHQ$nf65EOgLrQMR/uIPnA4rEsF5h7TKyQwu9U1bMCHGi/4",
            "$argon2id$v=19$m=256,t=2$c29tZXNhbHQ$nf65EOgLrQMR/uIPnA4rEsF5h7TKyQwu9U1bMCHGi/4",
            "$argon2id$v=19$m=99999999999,t=2,p=1$c29tZXNhbHQ$nf65EOgLrQMR/uIPnA4rEsF5h7TKyQwu9U1bMCHGi/4",
            "$argon2id$v=19$m=256,t=2,p=1$!!!$nf65EOgLrQMR/uIPnA4rEsF5h7TKyQwu9U1bMCHGi/4",
            "$argon2id$v=19$m=256,t=2,p=1$c29tZXNhbHQ$nf65EOgLrQMR/uIPnA4rEsF5h7TKyQwu9U1bMCHGi/4$x",
        ] {
            assert!(PhcHash::parse(bad).is_err(), "{bad}");
        }
    }

    #[tokio::test]
    async fn the_reference_hash_verifies_and_wrong_passwords_do_not() {
        let hasher = pool(small(), 1, 4);
        assert_eq!(
            hasher.verify("password", REFERENCE).await.unwrap(),
            Verification::Match {
                needs_rehash: false
            }
        );
        assert_eq!(
            hasher.verify("Password", REFERENCE).await.unwrap(),
            Verification::Mismatch
        );
    }

    #[tokio::test]
    async fn hashes_verify_and_changed_parameters_ask_for_a_rehash() {
        let hasher = pool(small(), 2, 8);
        let phc = hasher.hash("correct horse battery staple").await.unwrap();
        assert!(phc.starts_with("$argon2id$v=19$m=256,t=2,p=1$"));
        assert_ne!(
            phc,
            hasher.hash("correct horse battery staple").await.unwrap(),
            "salted"
        );
        assert_eq!(
            hasher
                .verify("correct horse battery staple", &phc)
                .await
                .unwrap(),
            Verification::Match {
                needs_rehash: false
            }
        );
        let stronger = pool(
            HashParams {
                memory_kib: 512,
                ..small()
            },
            1,
            4,
        );
        assert_eq!(
            stronger
                .verify("correct horse battery staple", &phc)
                .await
                .unwrap(),
            Verification::Match { needs_rehash: true }
        );
        assert_eq!(
            stronger
                .verify("wrong horse battery staple", &phc)
                .await
                .unwrap(),
            Verification::Mismatch
        );
    }

    #[tokio::test]
    async fn composed_and_decomposed_accents_are_the_same_password() {
        let hasher = pool(small(), 1, 4);
        let composed = "mot de passe élémentaire";
        let decomposed: String = composed.nfd().collect();
        assert_ne!(composed, decomposed);
        let phc = hasher.hash(composed).await.unwrap();
        assert!(matches!(
            hasher.verify(&decomposed, &phc).await.unwrap(),
            Verification::Match { .. }
        ));
    }

    #[tokio::test]
    async fn huge_passwords_are_refused_before_hashing() {
        // No worker at all: anything that reached the queue would never answer.
        let hasher = pool(small(), 0, 1);
        let huge = "a".repeat(1024 * 1024);
        assert_eq!(hasher.hash(&huge).await, Err(PasswordError::TooLong));
        assert_eq!(
            hasher.verify(&huge, REFERENCE).await,
            Err(PasswordError::TooLong)
        );
        assert_eq!(
            hasher.verify_dummy(&huge).await,
            Err(PasswordError::TooLong)
        );
        assert_eq!(normalise(&"é".repeat(512)).map(|p| p.len()), Ok(1024));
        assert_eq!(normalise(&"é".repeat(513)), Err(PasswordError::TooLong));
    }

    #[tokio::test]
    async fn a_full_queue_answers_busy_at_once() {
        // No worker and room for one job: the queue fills with the first.
        let hasher = pool(small(), 0, 1);
        let (reply, _pending) = oneshot::channel();
        hasher
            .submit(Job::Verify {
                password: normalise("waiting in the queue").unwrap(),
                stored: (*hasher.dummy).clone(),
                reply,
            })
            .unwrap();
        assert_eq!(
            hasher.verify_dummy("one too many").await,
            Err(PasswordError::Busy)
        );
        assert_eq!(hasher.hash("one too many").await, Err(PasswordError::Busy));
    }

    #[tokio::test]
    async fn the_dummy_verification_never_matches() {
        let hasher = pool(small(), 1, 4);
        assert_eq!(
            hasher.verify_dummy("anything at all").await.unwrap(),
            Verification::Mismatch
        );
    }
}
