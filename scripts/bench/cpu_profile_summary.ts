/**
 * Summarises a V8 `.cpuprofile` (from `deno run --cpu-prof`): self time per function, biggest first, so a
 * benchmark miss can be traced to where the time goes.
 *
 * Usage: deno run --allow-read scripts/bench/cpu_profile_summary.ts FILE.cpuprofile [TOP]
 *
 * @module
 */

interface ProfileNode {
  id: number;
  callFrame: { functionName: string; url: string; lineNumber: number };
  hitCount?: number;
}

/**
 * Self time (ms) per function of a profile, biggest first.
 *
 * @example
 * ```ts
 * const rows = summarizeProfile(JSON.parse(await Deno.readTextFile("CPU.cpuprofile")));
 * console.log(rows.slice(0, 10));
 * ```
 */
export function summarizeProfile(
  profile: { nodes: ProfileNode[]; samples: number[]; timeDeltas: number[] },
): { name: string; ms: number; share: number }[] {
  const byId = new Map(profile.nodes.map((n) => [n.id, n]));
  const self = new Map<string, number>();
  let total = 0;
  for (let i = 0; i < profile.samples.length; i++) {
    const node = byId.get(profile.samples[i]);
    const dt = (profile.timeDeltas[i] ?? 0) / 1000;
    total += dt;
    if (!node) continue;
    const f = node.callFrame;
    const file = f.url.split("/").slice(-2).join("/");
    const name = `${f.functionName || "(anonymous)"} ${file}${file ? `:${f.lineNumber + 1}` : ""}`;
    self.set(name, (self.get(name) ?? 0) + dt);
  }
  return [...self.entries()].map(([name, ms]) => ({ name, ms, share: ms / total })).sort((a, b) =>
    b.ms - a.ms
  );
}

if (import.meta.main) {
  const [file, top] = Deno.args;
  if (!file) {
    console.error("Usage: cpu_profile_summary.ts FILE.cpuprofile [TOP]");
    Deno.exit(64);
  }
  const rows = summarizeProfile(JSON.parse(await Deno.readTextFile(file)));
  for (const r of rows.slice(0, Number(top ?? 25))) {
    console.log(`${r.ms.toFixed(0).padStart(7)} ms ${(r.share * 100).toFixed(1).padStart(5)}%  ${r.name}`);
  }
}
