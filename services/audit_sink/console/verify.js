// Checks a C2SP tlog-proof bundle of the audit trail in the browser, with WebCrypto only.
//
// What it proves, in this order (docs/audit-trail.md, "Security console"):
//  1. the pinned vkey "<name>+<hex key id>+<base64(0x01 || Ed25519 key)>" is well formed and
//     its key id is SHA-256(name || 0x0A || 0x01 || key)[:4];
//  2. the bundle's checkpoint note carries a signature by the member's key (the pinned key
//     under the member's name: "<name>" for a single log, "<name>/shards/<p>" for a shard),
//     every such signature verifies (Ed25519 over the note's text), and the checkpoint's
//     origin is that member name;
//  3. the RFC 6962 inclusion proof puts SHA-256(0x00 || leaf) at the bundle's index under the
//     checkpoint's size and root;
//  4. the leaf (the bundle's "extra" data) is a version-1 record entry whose header names the
//     same index, whose body names the event looked at.
// Any failure throws a VerifyError saying which step failed and why. Nothing here touches the
// DOM or the network: the caller fetches the bundle and shows the outcome.

const encoder = new TextEncoder();
const HEADER = "c2sp.org/tlog-proof@v1";
const EM_DASH_SPACE = "\u2014 ";
const MAX_PROOF_HASHES = 64;
const MAX_UINT64 = (1n << 64n) - 1n;
const LEAF_HEADER_SIZE = 88;
const RECORD = 1;

export class VerifyError extends Error {
  constructor(step, message) {
    super(message);
    this.name = "VerifyError";
    this.step = step;
  }
}

function fail(step, message) {
  throw new VerifyError(step, message);
}

export function decodeBase64(text) {
  // Canonical standard base64 only (what the log writes): decoding and re-encoding agree.
  if (typeof text !== "string" || !/^[A-Za-z0-9+/]*={0,2}$/.test(text) || text.length % 4 !== 0) {
    return null;
  }
  let binary;
  try {
    binary = atob(text);
  } catch {
    return null;
  }
  const bytes = Uint8Array.from(binary, (c) => c.charCodeAt(0));
  return encodeBase64(bytes) === text ? bytes : null;
}

export function encodeBase64(bytes) {
  let binary = "";
  for (const byte of bytes) binary += String.fromCharCode(byte);
  return btoa(binary);
}

export function toHex(bytes) {
  return Array.from(bytes, (b) => b.toString(16).padStart(2, "0")).join("");
}

function concat(...parts) {
  const out = new Uint8Array(parts.reduce((n, p) => n + p.length, 0));
  let at = 0;
  for (const part of parts) {
    out.set(part, at);
    at += part.length;
  }
  return out;
}

function equal(a, b) {
  if (a.length !== b.length) return false;
  let diff = 0;
  for (let i = 0; i < a.length; i += 1) diff |= a[i] ^ b[i];
  return diff === 0;
}

export async function sha256(bytes) {
  return new Uint8Array(await crypto.subtle.digest("SHA-256", bytes));
}

function parseUint64(text) {
  if (!/^(0|[1-9][0-9]{0,19})$/.test(text)) return null;
  const value = BigInt(text);
  return value > MAX_UINT64 ? null : value;
}

function validKeyName(name) {
  return name.length > 0 && !/[+\s\x00-\x1f]/u.test(name);
}

/** The signed-note key id of an Ed25519 key under a name, as 8 lowercase hex digits. */
export async function keyId(name, publicKey) {
  const digest = await sha256(concat(encoder.encode(name), Uint8Array.of(0x0a, 0x01), publicKey));
  return toHex(digest.subarray(0, 4));
}

/** A vkey, checked: its name, key id (hex) and raw 32-byte Ed25519 public key. */
export async function parseVkey(text) {
  // The name holds no "+", so the first two "+" end the name and the key id; the base64
  // key after them may hold "+" of its own.
  const whole = String(text).trim();
  const first = whole.indexOf("+");
  const second = first < 0 ? -1 : whole.indexOf("+", first + 1);
  if (second < 0) fail("key", "a vkey has three '+'-separated parts: name, key id, key");
  const name = whole.slice(0, first);
  const idHex = whole.slice(first + 1, second);
  const keyText = whole.slice(second + 1);
  if (!validKeyName(name)) fail("key", "the vkey's name is empty or holds spaces or controls");
  if (!/^[0-9a-f]{8}$/.test(idHex)) fail("key", "the vkey's key id is not 8 lowercase hex digits");
  const material = decodeBase64(keyText);
  if (material === null || material.length !== 33) {
    fail("key", "the vkey's key is not canonical base64 of 33 bytes");
  }
  if (material[0] !== 0x01) fail("key", "the vkey is not an Ed25519 key (type 0x01)");
  const publicKey = material.subarray(1);
  const derived = await keyId(name, publicKey);
  if (derived !== idHex) {
    fail("key", `the vkey's key id ${idHex} does not match its name and key (${derived})`);
  }
  return { name, keyIdHex: idHex, publicKey, text: `${name}+${idHex}+${keyText}` };
}

/** The key name (and checkpoint origin) of a member: the log, or the shard of a partition. */
export function memberName(name, shard) {
  return shard === null || shard === undefined ? name : `${name}/shards/${shard}`;
}

/** A tlog-proof bundle's parts, not verified: index, proof hashes, extra (leaf), note. */
export function parseBundle(text) {
  const split = text.indexOf("\n\n");
  if (split < 0) fail("bundle", "the proof has no empty line before its checkpoint");
  const note = text.slice(split + 2);
  if (!note) fail("bundle", "the proof has no checkpoint after the empty line");
  const lines = text.slice(0, split).split("\n");
  if (lines[0] !== HEADER) fail("bundle", `the proof does not start with ${HEADER}`);
  let at = 1;
  let extra = null;
  if (at < lines.length && lines[at].startsWith("extra ")) {
    extra = decodeBase64(lines[at].slice(6));
    if (extra === null) fail("bundle", "the proof's extra line is not canonical base64");
    at += 1;
  }
  if (at >= lines.length || !lines[at].startsWith("index ")) {
    fail("bundle", `line ${at + 1} of the proof should be "index <decimal>"`);
  }
  const index = parseUint64(lines[at].slice(6));
  if (index === null) fail("bundle", "the proof's index is not a decimal below 2^64");
  const hashes = lines.slice(at + 1);
  if (hashes.length > MAX_PROOF_HASHES) fail("bundle", "the proof has more than 64 hashes");
  const proof = hashes.map((line, n) => {
    const hash = decodeBase64(line);
    if (hash === null || hash.length !== 32) {
      fail("bundle", `line ${at + 2 + n} of the proof is not base64 of a 32-byte hash`);
    }
    return hash;
  });
  return { index, proof, extra, note };
}

/** A signed note's text and signature lines, not verified. */
export function parseNote(note) {
  if (/[\x00-\x09\x0b-\x1f]/.test(note)) fail("signature", "the checkpoint holds a control character");
  const split = note.lastIndexOf("\n\n");
  if (split < 0) fail("signature", "the checkpoint has no blank line before its signatures");
  const text = note.slice(0, split + 1);
  const block = note.slice(split + 2);
  if (!block || !block.endsWith("\n")) fail("signature", "the checkpoint's signatures are malformed");
  const signatures = block
    .slice(0, -1)
    .split("\n")
    .map((line, n) => {
      if (!line.startsWith(EM_DASH_SPACE)) {
        fail("signature", `signature line ${n + 1} does not start with an em dash`);
      }
      const parts = line.slice(EM_DASH_SPACE.length).split(" ");
      const blob = parts.length === 2 ? decodeBase64(parts[1]) : null;
      if (blob === null || blob.length < 5 || !validKeyName(parts[0])) {
        fail("signature", `signature line ${n + 1} is malformed`);
      }
      return { name: parts[0], keyIdHex: toHex(blob.subarray(0, 4)), signature: blob.subarray(4) };
    });
  return { text, signatures };
}

/** A checkpoint's origin, size and root (from a verified note's text). */
export function parseCheckpoint(text) {
  if (!text.endsWith("\n")) fail("checkpoint", "the checkpoint text does not end with a newline");
  const lines = text.slice(0, -1).split("\n");
  if (lines.length < 3) fail("checkpoint", "the checkpoint needs an origin, a size and a root");
  const size = parseUint64(lines[1]);
  if (size === null) fail("checkpoint", "the checkpoint's size is not a decimal below 2^64");
  const root = decodeBase64(lines[2]);
  if (root === null || root.length !== 32) fail("checkpoint", "the checkpoint's root is not a hash");
  return { origin: lines[0], size, root };
}

async function nodeHash(left, right) {
  return sha256(concat(Uint8Array.of(0x01), left, right));
}

/** The RFC 6962 leaf hash SHA-256(0x00 || leaf). */
export async function leafHash(leaf) {
  return sha256(concat(Uint8Array.of(0x00), leaf));
}

/** RFC 9162 section 2.1.3.2: whether ``proof`` puts ``hash`` at ``index`` under ``root``. */
export async function verifyInclusion(hash, index, size, proof, root) {
  if (index >= size) {
    fail("inclusion", `index ${index} is not below the checkpoint's size ${size}`);
  }
  let fn = index;
  let sn = size - 1n;
  let r = hash;
  for (const p of proof) {
    if (sn === 0n) fail("inclusion", "the inclusion proof has more hashes than the tree has levels");
    if ((fn & 1n) === 1n || fn === sn) {
      r = await nodeHash(p, r);
      if ((fn & 1n) === 0n) {
        while ((fn & 1n) === 0n && fn !== 0n) {
          fn >>= 1n;
          sn >>= 1n;
        }
      }
    } else {
      r = await nodeHash(r, p);
    }
    fn >>= 1n;
    sn >>= 1n;
  }
  if (sn !== 0n) fail("inclusion", "the inclusion proof has fewer hashes than the tree needs");
  if (!equal(r, root)) {
    fail("inclusion", "the inclusion proof does not lead to the checkpoint's root hash");
  }
}

/** The fixed header and the body of a leaf (docs/audit-trail.md section 1.1). */
export function decodeLeaf(leaf) {
  if (leaf.length < LEAF_HEADER_SIZE) fail("leaf", "the leaf is shorter than its header");
  const view = new DataView(leaf.buffer, leaf.byteOffset, leaf.byteLength);
  const topicLength = view.getUint16(86);
  if (leaf.length < LEAF_HEADER_SIZE + topicLength) fail("leaf", "the leaf's topic is cut short");
  const bodyBytes = leaf.subarray(LEAF_HEADER_SIZE + topicLength);
  let body;
  try {
    body = JSON.parse(new TextDecoder("ascii", { fatal: true }).decode(bodyBytes));
  } catch {
    fail("leaf", "the leaf's body is not JSON");
  }
  return {
    version: leaf[0],
    type: leaf[1],
    index: view.getBigUint64(2),
    partition: view.getInt32(74),
    offset: view.getBigInt64(78),
    topic: new TextDecoder().decode(leaf.subarray(LEAF_HEADER_SIZE, LEAF_HEADER_SIZE + topicLength)),
    body,
  };
}

async function checkSignatures(note, pinned, name) {
  const parsed = parseNote(note);
  const expectedId = await keyId(name, pinned.publicKey);
  const mine = parsed.signatures.filter((s) => s.name === name && s.keyIdHex === expectedId);
  if (mine.length === 0) {
    const seen = parsed.signatures.map((s) => `${s.name}+${s.keyIdHex}`).join(", ");
    fail("signature", `the checkpoint is not signed by the pinned key ${name}+${expectedId} (signed by: ${seen || "nobody"})`);
  }
  const key = await crypto.subtle.importKey("raw", pinned.publicKey, { name: "Ed25519" }, false, ["verify"]);
  const message = encoder.encode(parsed.text);
  for (const signature of mine) {
    const good =
      signature.signature.length === 64 &&
      (await crypto.subtle.verify({ name: "Ed25519" }, key, signature.signature, message));
    if (!good) {
      fail("signature", `the Ed25519 signature by ${name}+${expectedId} does not verify`);
    }
  }
  return { text: parsed.text, keyName: `${name}+${expectedId}` };
}

/**
 * Verify a proof bundle of one event against the pinned vkey (text), for the member holding
 * it (``shard``: its partition, or null for a single log). ``index`` is where the server says
 * the entry is (checked against the proof). Returns what was proven, or throws VerifyError.
 */
export async function verifyProof({ bundle, vkey, shard = null, eventId, index = null }) {
  const pinned = await parseVkey(vkey);
  const name = memberName(pinned.name, shard);
  const parsed = parseBundle(bundle);
  const signed = await checkSignatures(parsed.note, pinned, name);
  const checkpoint = parseCheckpoint(signed.text);
  if (checkpoint.origin !== name) {
    fail("checkpoint", `the checkpoint's origin ${checkpoint.origin} is not ${name}`);
  }
  if (parsed.extra === null) fail("leaf", "the proof carries no leaf to check");
  await verifyInclusion(await leafHash(parsed.extra), parsed.index, checkpoint.size, parsed.proof, checkpoint.root);
  const leaf = decodeLeaf(parsed.extra);
  if (leaf.version !== 1 || leaf.type !== RECORD) {
    fail("leaf", `the leaf is not a version-1 record entry (version ${leaf.version}, type ${leaf.type})`);
  }
  if (leaf.index !== parsed.index) {
    fail("leaf", `the leaf's header names index ${leaf.index}, the proof index ${parsed.index}`);
  }
  if (index !== null && BigInt(index) !== parsed.index) {
    fail("leaf", `the proof is for index ${parsed.index}, but the entry is at index ${index}`);
  }
  const body = leaf.body;
  if (eventId !== undefined && (body.event_id !== eventId || body.audit_id !== `${body.kind}:${eventId}`)) {
    fail("leaf", `the proven leaf is about ${String(body.audit_id)}, not event ${eventId}`);
  }
  return {
    checkpointSize: checkpoint.size,
    checkpointRoot: encodeBase64(checkpoint.root),
    keyName: signed.keyName,
    memberName: name,
    index: parsed.index,
    leaf,
    body,
  };
}
