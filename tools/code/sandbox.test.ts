// Tests for the code tool's sandbox, with real bubblewrap calls: images in and out, isolation, limits, cleanup.
import { randomUUID } from "node:crypto";
import { chmod, mkdtemp, readdir, readFile, rm, stat, writeFile } from "node:fs/promises";
import { createServer } from "node:http";
import type { AddressInfo } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import sharp from "sharp";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import {
  DEFAULT_SANDBOX_LIMITS,
  SANDBOX_OUTPUT_DIR,
  probeSandbox,
  resetSandboxProbe,
  runInSandbox,
  type SandboxLimits,
  type SandboxResult,
} from "./sandbox.ts";

const probe = await probeSandbox();
if (!probe.ok) console.warn(`sandbox.test.ts: sandbox tests skipped: ${probe.message}`);

function run(code: string, limits: Partial<SandboxLimits> = {}, extra: Partial<Parameters<typeof runInSandbox>[0]> = {}): Promise<SandboxResult> {
  return runInSandbox({ code, inputs: [], limits: { ...DEFAULT_SANDBOX_LIMITS, ...limits }, ...extra });
}

/** Host pids whose command line contains `marker`. */
async function processesWith(marker: string): Promise<number[]> {
  const found: number[] = [];
  for (const name of await readdir("/proc")) {
    if (!/^\d+$/.test(name)) continue;
    const cmdline = await readFile(`/proc/${name}/cmdline`, "utf8").catch(() => "");
    if (cmdline.includes(marker)) found.push(Number(name));
  }
  return found;
}

/** Waits until a process with `marker` shows up (proves the scan sees the sandbox's processes). */
async function waitForProcess(marker: string, ms: number): Promise<boolean> {
  const until = Date.now() + ms;
  while (Date.now() < until) {
    if ((await processesWith(marker)).length > 0) return true;
    await new Promise((r) => setTimeout(r, 50));
  }
  return false;
}

/** Code that replaces its own process with a Python running `body`, `marker` on its command line. */
function underMarker(marker: string, body: string): string {
  return `import os\nos.execv("/usr/bin/python3", ["/usr/bin/python3", "-c", ${JSON.stringify(body)}, ${JSON.stringify(marker)}])\n`;
}

describe("probeSandbox", () => {
  it("answers once per process, with one line when the sandbox is unusable", async () => {
    expect(probeSandbox()).toBe(probeSandbox());
    if (!probe.ok) expect(probe.message).not.toContain("\n");
  });
});

describe.skipIf(!probe.ok)("runInSandbox (real bubblewrap)", () => {
  describe.concurrent("images, isolation and limits", () => {
    it("probeSandbox is ok here, and again after a reset", async () => {
      expect(probe).toEqual({ ok: true });
      resetSandboxProbe();
      expect(await probeSandbox()).toEqual({ ok: true });
    });

    it("remembers a working sandbox for the next process in a file of the temp dir that this user owns", async () => {
      const file = join(tmpdir(), `loupe-code-probe-${process.getuid!()}.json`);
      const memo = JSON.parse(await readFile(file, "utf8")) as { key: string; at: number };
      expect(JSON.parse(memo.key)[0]).toMatch(/\/bwrap$/);
      expect(Date.now() - memo.at).toBeLessThan(24 * 3600 * 1000);
      expect((await stat(file)).uid).toBe(process.getuid!());
    });

    it("crops inputs bound at a relative path and under /mnt/data/images, and returns the saved crops", async () => {
      const img = await sharp({ create: { width: 800, height: 600, channels: 3, background: "#3060a0" } }).jpeg().toBuffer();
      const code = [
        "from PIL import Image",
        "import os, uuid",
        `out = "${SANDBOX_OUTPUT_DIR}"`,
        "a = Image.open('hr_bench_4k/179.jpg').crop((100, 50, 400, 250))",
        "p = os.path.join(out, f'179_{uuid.uuid4().hex[:8]}.jpg'); a.save(p); print(p)",
        "b = Image.open('/mnt/data/images/img_0.jpg').crop((0, 0, 120, 90))",
        "q = os.path.join(out, 'img_0_crop.png'); b.save(q); print(q)",
      ].join("\n");
      const inputs = [
        { sandboxPath: "hr_bench_4k/179.jpg", bytes: img },
        { sandboxPath: "/mnt/data/images/img_0.jpg", bytes: img },
      ];
      const r = await run(code, {}, { inputs });
      expect(r.stderr).toBe("");
      expect(r).toMatchObject({ exitCode: 0, signal: null, problem: null, filesSkipped: 0 });
      expect(r.files.map((f) => f.path).sort()).toEqual(r.stdout.trim().split("\n").sort());
      const sizes = await Promise.all(r.files.map(async (f) => [f.name.replace(/_[0-9a-f]{8}/, ""), await sharp(f.bytes).metadata()] as const));
      expect(sizes.map(([n, m]) => [n, m.width, m.height, m.format]).sort()).toEqual([
        ["179.jpg", 300, 200, "jpeg"],
        ["img_0_crop.png", 120, 90, "png"],
      ]);
    });

    it("shows earlier outputs and reports only the ones the code changes", async () => {
      const previousOutputs = [
        { name: "a.txt", bytes: Buffer.from("first") },
        { name: "b.txt", bytes: Buffer.from("second") },
        { name: "c.txt", bytes: Buffer.from("third") },
      ];
      const code = [
        `d = "${SANDBOX_OUTPUT_DIR}"`,
        "print(open(d + '/a.txt').read())",
        "open(d + '/b.txt', 'w').write('SECOND')",
        "open(d + '/c.txt', 'w').write('third')",
        "open(d + '/new.txt', 'w').write('new')",
      ].join("\n");
      const r = await run(code, {}, { previousOutputs });
      expect(r).toMatchObject({ exitCode: 0, problem: null, stdout: "first\n" });
      expect(r.files.map((f) => [f.name, f.bytes.toString()])).toEqual([
        ["b.txt", "SECOND"],
        ["new.txt", "new"],
      ]);
    });

    it("cannot reach a server on the host's loopback", async () => {
      const requests: string[] = [];
      const server = createServer((req, res) => {
        requests.push(req.url ?? "");
        res.end("hello");
      });
      await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
      const port = (server.address() as AddressInfo).port;
      try {
        const code = [
          "import urllib.request, socket",
          `for url in ['http://127.0.0.1:${port}/', 'http://localhost:${port}/', 'http://example.com/']:`,
          "    try:",
          "        print('GOT', urllib.request.urlopen(url, timeout=2).read())",
          "    except Exception as e:",
          "        print('refused', type(e).__name__)",
          "print(sorted(n for _, n in socket.if_nameindex()))",
        ].join("\n");
        const r = await run(code);
        expect(r.exitCode).toBe(0);
        expect(r.stdout).not.toContain("GOT");
        expect(r.stdout.match(/^refused/gm)).toHaveLength(3);
        expect(r.stdout).toContain("['lo']");
        expect(requests).toEqual([]);
      } finally {
        server.close();
      }
    });

    it("sees none of Loupe's environment", async () => {
      const secret = `tvly-${randomUUID()}`;
      const saved = { TAVILY_API_KEY: process.env.TAVILY_API_KEY, LOUPE_X: process.env.LOUPE_X };
      process.env.TAVILY_API_KEY = secret;
      process.env.LOUPE_X = `loupe-${secret}`;
      try {
        const code = [
          "import os, glob",
          "print(sorted(os.environ.items()))",
          "for f in glob.glob('/proc/*/environ'):",
          "    try: print(f, open(f, 'rb').read())",
          "    except Exception as e: print(f, type(e).__name__)",
        ].join("\n");
        const r = await run(code);
        expect(r.exitCode).toBe(0);
        expect(r.stdout).toContain("('HOME', '/tmp')");
        expect(r.stdout).not.toContain(secret);
        expect(r.stdout).not.toMatch(/LOUPE|TAVILY|API_KEY/);
      } finally {
        for (const [k, v] of Object.entries(saved)) {
          if (v === undefined) delete process.env[k];
          else process.env[k] = v;
        }
      }
    });

    it("sees only the input file, not its neighbours, /etc/shadow, the home or the working directory", async () => {
      const host = await mkdtemp(join(tmpdir(), "loupe-sandbox-test-"));
      try {
        await writeFile(join(host, "photo.jpg"), "PHOTO");
        await writeFile(join(host, "secret.txt"), "SECRET");
        const code = [
          "import os, json",
          `host = ${JSON.stringify(host)}`,
          `paths = [host + '/secret.txt', '/etc/shadow', '/etc/passwd', '/root', ${JSON.stringify(process.cwd())}, ${JSON.stringify(join(process.cwd(), "package.json"))}]`,
          "print(json.dumps({'listing': sorted(os.listdir(host)), 'photo': open(host + '/photo.jpg').read(), 'exists': [p for p in paths if os.path.exists(p)], 'root': sorted(os.listdir('/')), 'etc': sorted(os.listdir('/etc'))}))",
        ].join("\n");
        const r = await run(code, {}, { inputs: [{ sandboxPath: join(host, "photo.jpg"), bytes: await readFile(join(host, "photo.jpg")) }] });
        expect(r.stderr).toBe("");
        const seen = JSON.parse(r.stdout) as Record<string, unknown>;
        expect(seen).toEqual({
          listing: ["photo.jpg"],
          photo: "PHOTO",
          exists: [],
          root: expect.not.arrayContaining(["root", "home", "work", "var", "srv", "sys"]),
          etc: ["alternatives", "ld.so.cache"],
        });
      } finally {
        await rm(host, { recursive: true, force: true });
      }
    });

    it("cannot write to the system, its inputs, / or /dev (only /tmp, the working dir and the output dir)", async () => {
      const code = [
        "import os",
        "for d in ['/usr/lib', '/usr/bin', '/etc', '/', '/dev', '/mnt/data/images', '/run/loupe', '/tmp', '.', '" + SANDBOX_OUTPUT_DIR + "']:",
        "    try:",
        "        open(os.path.join(d, 'x'), 'w').write('x'); print('wrote', d)",
        "    except OSError as e:",
        "        print('refused', d, e.errno)",
        "try:",
        "    open('/mnt/data/images/img_0.jpg', 'w').write('x'); print('wrote input')",
        "except OSError as e:",
        "    print('refused input', e.errno)",
        "print(os.getuid(), os.getgid())",
      ].join("\n");
      const r = await run(code, {}, { inputs: [{ sandboxPath: "/mnt/data/images/img_0.jpg", bytes: Buffer.from("IMG") }] });
      expect(r.exitCode).toBe(0);
      const wrote = r.stdout.split("\n").filter((l) => l.startsWith("wrote"));
      expect(wrote).toEqual(["wrote /tmp", "wrote .", `wrote ${SANDBOX_OUTPUT_DIR}`]);
      expect(r.stdout).toContain("refused input");
      expect(r.stdout).toContain("65534 65534");
      expect(r.files.map((f) => f.name)).toEqual(["x"]);
    });

    it("stops an endless loop at the wall-clock limit and leaves no process behind", async () => {
      const marker = `loupe-loop-${randomUUID()}`;
      const body = "import subprocess, sys\nsubprocess.Popen(['/usr/bin/sleep', '600'])\nsubprocess.Popen([sys.executable, '-c', 'import time\\nwhile True: time.sleep(1)', sys.argv[1]])\nwhile True: pass";
      // A limit long enough for the sandbox and its processes to start on a loaded machine.
      const pending = run(underMarker(marker, body), { timeoutMs: 4000 });
      expect(await waitForProcess(marker, 3900)).toBe(true);
      const r = await pending;
      expect(r).toMatchObject({ exitCode: null, signal: "SIGKILL", problem: "the code ran for more than 4 s and was stopped" });
      expect(r.ms).toBeGreaterThanOrEqual(4000);
      expect(r.ms).toBeLessThan(15_000);
      expect(await processesWith(marker)).toEqual([]);
    });

    it("stops code at its CPU time limit", async () => {
      const r = await run("while True: pass", { cpuSeconds: 1 });
      expect(r).toMatchObject({ exitCode: null, signal: "SIGXCPU", problem: "the code used more than 1 s of CPU time and was stopped (SIGXCPU)" });
    });

    it("turns an 8 GiB allocation into a MemoryError", async () => {
      const r = await run("import numpy as np\na = np.ones(8 * 1024**3, dtype=np.uint8)\nprint(a.sum())");
      expect(r).toMatchObject({ exitCode: 1, signal: null, problem: null, stdout: "" });
      expect(r.stderr).toContain("MemoryError");
    });

    it("ends a fork bomb at the process limit and leaves no process behind", async () => {
      const marker = `loupe-forkbomb-${randomUUID()}`;
      const body = "import os\nwarned = False\nwhile True:\n    try:\n        os.fork()\n    except OSError as e:\n        if not warned: os.write(2, (str(e) + '\\n').encode()); warned = True";
      const r = await run(underMarker(marker, body), { timeoutMs: 2000, maxProcesses: 32, maxOutputBytes: 4096 });
      expect(r.stderr).toContain("Resource temporarily unavailable");
      expect(r.problem).toBe("the code ran for more than 2 s and was stopped");
      expect(await processesWith(marker)).toEqual([]);
    });

    it("keeps the first 32 KiB of 10 MB of output and counts the rest", async () => {
      const r = await run("import sys\nfor _ in range(100): sys.stdout.write('x' * 100_000)\nsys.stderr.write('done')");
      expect(r).toMatchObject({ exitCode: 0, problem: null, stderr: "done", stderrCut: 0 });
      expect(r.stdout.length).toBe(DEFAULT_SANDBOX_LIMITS.maxOutputBytes);
      expect(r.stdoutCut).toBe(10_000_000 - DEFAULT_SANDBOX_LIMITS.maxOutputBytes);
    });

    it("never cuts a UTF-8 character in two", async () => {
      const r = await run("print('é' * 1000)", { maxOutputBytes: 101 });
      expect(r.stdout).toBe("é".repeat(50));
      expect(r.stdoutCut).toBe(2001 - 100);
    });

    it("says when a file grew past the file size limit (SIGXFSZ)", async () => {
      const code = "import signal\nsignal.signal(signal.SIGXFSZ, signal.SIG_DFL)\nopen('/tmp/big', 'wb').write(b'x' * 3_000_000)";
      const r = await run(code, { maxFileBytes: 1024 ** 2 });
      expect(r).toMatchObject({ exitCode: null, signal: "SIGXFSZ" });
      expect(r.problem).toBe("the code tried to write a file larger than 1 MiB, the file size limit, and was stopped (SIGXFSZ)");
    });

    it("reads back no link the code plants in the output dir", async () => {
      const code = [
        `d = "${SANDBOX_OUTPUT_DIR}"`,
        "import os",
        "os.symlink('/etc/ld.so.cache', d + '/cache.jpg')",
        "os.symlink('/', d + '/root')",
        "os.mkfifo(d + '/fifo')",
        "os.makedirs(d + '/sub/deeper')",
        "open(d + '/sub/deeper/real.txt', 'w').write('real')",
      ].join("\n");
      const r = await run(code);
      expect(r.exitCode).toBe(0);
      expect(r.files.map((f) => [f.name, f.path, f.bytes.toString()])).toEqual([["sub/deeper/real.txt", `${SANDBOX_OUTPUT_DIR}/sub/deeper/real.txt`, "real"]]);
      expect(r.filesSkipped).toBe(3);
    });

    it("stops code that floods the output dir with files", async () => {
      const code = `d = "${SANDBOX_OUTPUT_DIR}"\nfor i in range(5000): open(f'{d}/{i}', 'w').close()\nwhile True: pass`;
      const r = await run(code, { timeoutMs: 15_000 });
      expect(r.problem).toBe(`the code wrote more than 4096 files and folders under ${SANDBOX_OUTPUT_DIR} and was stopped`);
      expect(r.files).toHaveLength(DEFAULT_SANDBOX_LIMITS.maxOutputFiles);
    });

    it("stops when the run is cancelled", async () => {
      const controller = new AbortController();
      setTimeout(() => controller.abort(), 300);
      const r = await run("while True: pass", {}, { signal: controller.signal });
      expect(r).toMatchObject({ signal: "SIGKILL", problem: "the code was stopped because the run was cancelled" });
      expect(r.ms).toBeLessThan(3000);
    });

    it("stops at once when cancelled while the call is being prepared", async () => {
      const controller = new AbortController();
      const pending = run("while True: pass", {}, { signal: controller.signal });
      controller.abort();
      const r = await pending;
      expect(r.problem).toBe("the code was stopped because the run was cancelled");
      expect(r.ms).toBeLessThan(3000);
    });

    it("refuses input paths that clash with the sandbox's own mounts, before running anything", async () => {
      for (const sandboxPath of ["/usr/bin/python3", "/etc/passwd", "/mnt/data", "/mnt/data/work", `${SANDBOX_OUTPUT_DIR}/x.jpg`, "/", "../../.."]) {
        await expect(run("print(1)", {}, { inputs: [{ sandboxPath, bytes: Buffer.from("x") }] })).rejects.toThrow(/clashes/);
      }
      const twice = [
        { sandboxPath: "a.jpg", bytes: Buffer.from("1") },
        { sandboxPath: "/mnt/data/work/a.jpg", bytes: Buffer.from("2") },
      ];
      await expect(run("print(1)", {}, { inputs: twice })).rejects.toThrow(/share the path/);
    });
  });

  describe("cleanup", () => {
    let parent: string;
    let savedTmpdir: string | undefined;

    beforeAll(async () => {
      // A temp dir of its own, so nothing else's sandbox dirs are counted; reachable by uid 65534.
      parent = await mkdtemp(join(tmpdir(), "loupe-sandbox-parent-"));
      await chmod(parent, 0o755);
      savedTmpdir = process.env.TMPDIR;
      process.env.TMPDIR = parent;
    });

    afterAll(async () => {
      if (savedTmpdir === undefined) delete process.env.TMPDIR;
      else process.env.TMPDIR = savedTmpdir;
      await rm(parent, { recursive: true, force: true });
    });

    it("1,000 files written: the first 8 come back, the rest are counted, and the temp dir is gone", async () => {
      const code = [
        `d = "${SANDBOX_OUTPUT_DIR}"`,
        "import os",
        "for i in range(1000): open(f'{d}/{i:04d}.txt', 'w').write(str(i))",
        "os.makedirs(d + '/locked/inner'); os.chmod(d + '/locked', 0)",
      ].join("\n");
      const r = await run(code);
      expect(r).toMatchObject({ exitCode: 0, problem: null });
      expect(tmpdir()).toBe(parent);
      expect(r.files.map((f) => f.name)).toEqual(["0000.txt", "0001.txt", "0002.txt", "0003.txt", "0004.txt", "0005.txt", "0006.txt", "0007.txt"]);
      expect(r.files[7]!.bytes.toString()).toBe("7");
      expect(r.filesSkipped).toBeGreaterThanOrEqual(992);
      expect(await readdir(parent)).toEqual([]);
    });
  });
});
