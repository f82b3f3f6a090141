// Where the tests find the repository's contract, and a producer that records instead of sending.
import { readdirSync, readFileSync } from 'node:fs';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import type { EventProducer, OutgoingRecord } from '../src/index.js';

// Compiled to dist/test/: the package is two levels up, the repository two more.
export const PACKAGE_ROOT = resolve(dirname(fileURLToPath(import.meta.url)), '..', '..');
export const REPO_ROOT = resolve(PACKAGE_ROOT, '..', '..');
export const VECTORS_DIR = join(REPO_ROOT, 'schemas', 'vectors');

export interface Vector {
  record: string;
  version: number;
  case: string;
  fingerprint_hex: string;
  single_object_hex: string;
  value: unknown;
  path: string;
}

/** Every schemas/vectors/<record>/v<N>/<case>.json. */
export function loadVectors(): Vector[] {
  const out: Vector[] = [];
  for (const record of readdirSync(VECTORS_DIR).sort()) {
    for (const version of readdirSync(join(VECTORS_DIR, record)).sort()) {
      for (const file of readdirSync(join(VECTORS_DIR, record, version)).sort()) {
        if (!file.endsWith('.json')) continue;
        const path = join(VECTORS_DIR, record, version, file);
        out.push({ ...(JSON.parse(readFileSync(path, 'utf8')) as Omit<Vector, 'path'>), path });
      }
    }
  }
  return out;
}

/** A producer that keeps what it is sent; `fail` makes the next sends throw; `gate` holds sends until opened. */
export class RecordingProducer implements EventProducer {
  readonly batches: OutgoingRecord[][] = [];
  connected = false;
  disconnected = false;
  fail: Error | null = null;
  private gateOpen: (() => void) | null = null;
  private gate: Promise<void> | null = null;

  hold(): void {
    this.gate = new Promise((resolve) => (this.gateOpen = resolve));
  }

  open(): void {
    this.gateOpen?.();
    this.gate = null;
  }

  get records(): OutgoingRecord[] {
    return this.batches.flat();
  }

  async connect(): Promise<void> {
    this.connected = true;
  }

  async send(records: readonly OutgoingRecord[]): Promise<void> {
    if (this.gate !== null) await this.gate;
    if (this.fail !== null) throw this.fail;
    this.batches.push([...records]);
  }

  async disconnect(): Promise<void> {
    this.disconnected = true;
  }
}
