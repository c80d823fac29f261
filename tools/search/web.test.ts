// Reading pages: readable text from HTML, PDF and plain text, and the direct web_visit provider with goal-directed summaries.
import { minimalPdf } from "../../test/fixtures/pdf.js";
import { createServer, type IncomingMessage, type ServerResponse } from "node:http";
import type { AddressInfo } from "node:net";
import { afterEach, describe, expect, it } from "vitest";
import type { CompleteOptions, ModelClient } from "../../src/core/model.js";
import type { ModelReply } from "../../src/core/protocol.js";
import type { Turn } from "../../src/core/state.js";
import { readableText, UnreadableContentError } from "./readable.js";
import { createDirectWebProvider, excerptForGoal, formatSummary } from "./web.js";

const servers: Array<ReturnType<typeof createServer>> = [];

async function serve(routes: Record<string, (req: IncomingMessage, res: ServerResponse) => void>) {
  const server = createServer((req, res) => (routes[req.url ?? ""] ?? ((_q, r) => r.writeHead(404).end("not here")))(req, res));
  servers.push(server);
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  const { port } = server.address() as AddressInfo;
  return { origin: `http://127.0.0.1:${port}`, host: `127.0.0.1:${port}` };
}

afterEach(async () => {
  for (const server of servers.splice(0)) {
    server.closeAllConnections();
    await new Promise((resolve) => server.close(resolve));
  }
});

const LIGHTHOUSE = [
  "The Tall Point lighthouse was built in 1871 from granite quarried on the island itself.",
  "Its lamp was first lit on 3 March 1872 and could be seen from 22 nautical miles away.",
  "The keeper's cottage now houses a small museum about the island's shipwrecks.",
];

function articlePage(paragraphs: string[]): string {
  return `<!doctype html><html><head><title>Tall Point Lighthouse | Coast Guide</title>
<script>window.tracking = { id: "UA-0000" }; function track() {}</script><style>body { color: red }</style></head>
<body><nav><a href="/">Home</a> | <a href="/about">About us</a> | <a href="/shop">Shop</a></nav>
<header><div class="banner">Subscribe to our newsletter!</div></header>
<main><article><h1>Tall Point Lighthouse</h1>
${paragraphs.map((p) => `<p>${p}</p>`).join("\n")}
</article></main>
<aside class="sidebar"><h3>Related</h3><ul><li><a href="/x">Other lighthouses</a></li></ul></aside>
<footer>© Coast Guide 2024 · Privacy · Cookies</footer><script>track();</script></body></html>`;
}

describe("readableText", () => {
  it("returns an HTML article's text without navigation, scripts or footers, paragraph by paragraph", async () => {
    const page = await readableText(Buffer.from(articlePage(LIGHTHOUSE)), "text/html; charset=utf-8", "https://coast.example/tall-point");
    expect(page.title).toContain("Tall Point Lighthouse");
    for (const p of LIGHTHOUSE) expect(page.text).toContain(p);
    expect(page.text).toContain(`${LIGHTHOUSE[0]}\n\n${LIGHTHOUSE[1]}`);
    for (const noise of ["About us", "tracking", "track()", "color: red", "Privacy", "newsletter"]) expect(page.text).not.toContain(noise);
  });

  it("falls back to the body text, still without navigation, when there is no article", async () => {
    const html = `<html><head><title>Index</title></head><body><nav>Home About</nav><ul><li>Alpha</li><li>Beta</li></ul><script>x()</script></body></html>`;
    const page = await readableText(Buffer.from(html), "text/html", "https://example.org/");
    expect(page.title).toBe("Index");
    expect(page.text).toBe("- Alpha\n- Beta");
  });

  it("decodes the charset the page declares", async () => {
    const html = Buffer.from(`<html><head><meta charset="iso-8859-1"></head><body><p>Café crème à Zürich</p></body></html>`, "latin1");
    const page = await readableText(html, "text/html", "https://example.org/");
    expect(page.text).toBe("Café crème à Zürich");
  });

  it("reads the text of a PDF", async () => {
    const pdf = minimalPdf(["Loupe field report", "Annual rainfall was 1234 mm."]);
    const page = await readableText(pdf, "application/pdf", "https://example.org/report.pdf");
    expect(page.text).toContain("Loupe field report");
    expect(page.text).toContain("Annual rainfall was 1234 mm.");
    const sniffed = await readableText(pdf, "application/octet-stream", "https://example.org/download");
    expect(sniffed.text).toContain("1234 mm");
  });

  it("keeps plain text and markdown as they are, tidied", async () => {
    const md = await readableText(Buffer.from("# Notes\r\n\r\n\r\n\r\nFirst   line  \nsecond\n"), "text/markdown", "https://example.org/notes.md");
    expect(md).toEqual({ title: "Notes", text: "# Notes\n\nFirst line\nsecond" });
  });

  it("refuses a document with no text", async () => {
    const png = Buffer.from("89504e470d0a1a0a0000000d49484452", "hex");
    await expect(readableText(png, "image/png", "https://example.org/a.png")).rejects.toThrow(UnreadableContentError);
    await expect(readableText(png, "image/png", "https://example.org/a.png")).rejects.toThrow("it is an image/png file");
  });
});

interface RecordedCall {
  turns: Turn[];
  options?: CompleteOptions;
}

/** A ModelClient that replies with a script and records what it was asked. */
function scriptedModel(reply: string | ((turns: Turn[]) => Promise<string>)): ModelClient & { calls: RecordedCall[] } {
  const calls: RecordedCall[] = [];
  return {
    url: "scripted://model",
    calls,
    modelName: async () => "scripted",
    async complete(turns, options): Promise<ModelReply> {
      calls.push({ turns, options });
      const content = typeof reply === "string" ? reply : await reply(turns);
      return { content, toolCalls: [], finishReason: "stop", usage: { promptTokens: 0, completionTokens: 0 }, ms: 1 };
    },
  };
}

function userText(turns: Turn[]): string {
  const user = turns.find((t) => t.role === "user");
  return user && user.role === "user" ? user.parts.map((p) => (p.type === "text" ? p.text : "")).join("") : "";
}

const FILLER = "Visitors often ask about the gift shop, the parking fees and the opening hours of the café in summer.";
const longParagraphs = [...LIGHTHOUSE.slice(0, 1), ...Array(700).fill(FILLER), ...LIGHTHOUSE.slice(1)];

describe("createDirectWebProvider", () => {
  it("condenses a long page toward the goal: summary and verbatim evidence, the model shown a bounded excerpt", async () => {
    const site = await serve({ "/tall-point": (_req, res) => res.writeHead(200, { "content-type": "text/html" }).end(articlePage(longParagraphs)) });
    const model = scriptedModel(
      [
        "<think>The page says when the lamp was first lit.</think>",
        "Summary: The lighthouse was built in 1871 and its lamp first lit on 3 March 1872.",
        "Evidence:",
        `> "${LIGHTHOUSE[1]}"`,
        "> The lighthouse was painted blue in 1990.",
      ].join("\n"),
    );
    const provider = createDirectWebProvider({ fetch: { allowHosts: [site.host] }, summarize: { model } });
    const controller = new AbortController();
    const goal = "When was the lamp of the Tall Point lighthouse first lit?";
    const { pages, failed } = await provider.webVisit!([`${site.origin}/tall-point`], { goal, signal: controller.signal });

    expect(failed).toEqual([]);
    expect(pages).toHaveLength(1);
    const [page] = pages;
    expect(page!.url).toBe(`${site.origin}/tall-point`);
    expect(page!.text.startsWith("Summary toward goal: The lighthouse was built in 1871")).toBe(true);
    expect(page!.text).toContain(`Evidence:\n> "${LIGHTHOUSE[1]}"\n`);
    expect(page!.text).toContain('> "The lighthouse was painted blue in 1990." (not found word for word on the page)');
    expect(page!.text).not.toContain("<think>");

    expect(model.calls).toHaveLength(1);
    const [{ turns, options }] = model.calls as [RecordedCall];
    expect(turns.map((t) => t.role)).toEqual(["system_text", "user"]);
    const shown = userText(turns);
    expect(shown).toContain(`Goal: ${goal}`);
    expect(shown).toContain(LIGHTHOUSE[1]);
    expect(shown.length).toBeLessThan(48_000 + 1_000);
    expect(options?.signal).toBeInstanceOf(AbortSignal);
    controller.abort();
    expect(options?.signal?.aborted).toBe(true);
  });

  it("returns short pages, and long pages without a goal, as they are", async () => {
    const site = await serve({
      "/short": (_req, res) => res.writeHead(200, { "content-type": "text/html" }).end(articlePage(LIGHTHOUSE)),
      "/long": (_req, res) => res.writeHead(200, { "content-type": "text/html" }).end(articlePage(longParagraphs)),
    });
    const model = scriptedModel("Summary: unused");
    const provider = createDirectWebProvider({ fetch: { allowHosts: [site.host] }, summarize: { model } });
    const short = await provider.webVisit!([`${site.origin}/short`], { goal: "when was it lit?" });
    expect(short.pages[0]!.text).toContain(LIGHTHOUSE[1]);
    const long = await provider.webVisit!([`${site.origin}/long`], {});
    expect(long.pages[0]!.text.length).toBeGreaterThan(12_000);
    expect(model.calls).toHaveLength(0);
  });

  it("falls back to the page text when the summarizer fails", async () => {
    const site = await serve({ "/long": (_req, res) => res.writeHead(200, { "content-type": "text/html" }).end(articlePage(longParagraphs)) });
    const model = scriptedModel(async () => {
      throw new Error("model server at scripted://model failed: HTTP 500");
    });
    const provider = createDirectWebProvider({ fetch: { allowHosts: [site.host] }, summarize: { model } });
    const { pages } = await provider.webVisit!([`${site.origin}/long`], { goal: "when was it lit?" });
    expect(pages[0]!.text.startsWith(LIGHTHOUSE[0]!)).toBe(true);
    expect(pages[0]!.text.length).toBeGreaterThan(12_000);
    expect(model.calls).toHaveLength(1);
  });

  it("reports pages it could not read, one line each, and reads the rest", async () => {
    const site = await serve({
      "/ok": (_req, res) => res.writeHead(200, { "content-type": "text/plain" }).end("plain facts"),
      "/to-private": (_req, res) => res.writeHead(302, { location: "http://10.0.0.1/admin" }).end(),
      "/logo.png": (_req, res) => res.writeHead(200, { "content-type": "image/png" }).end(Buffer.from("89504e47", "hex")),
      "/data.zip": (_req, res) => res.writeHead(200, { "content-type": "application/zip" }).end(Buffer.from("504b0304", "hex")),
    });
    const provider = createDirectWebProvider({ fetch: { allowHosts: [site.host] } });
    const { pages, failed } = await provider.webVisit!(
      [`${site.origin}/ok`, "http://169.254.169.254/latest/meta-data", "http://[::1]/", `${site.origin}/missing`, `${site.origin}/to-private`, `${site.origin}/logo.png`, `${site.origin}/data.zip`],
      { goal: "anything" },
    );
    expect(pages).toEqual([
      { url: `${site.origin}/ok`, title: undefined, text: "plain facts" },
      // An image URL comes back as the image (the search node turns it into a new image or says why it can't).
      { url: `${site.origin}/logo.png`, text: "", image: { base64: Buffer.from("89504e47", "hex").toString("base64"), mime: "image/png" } },
    ]);
    expect(failed).toEqual([
      { url: "http://169.254.169.254/latest/meta-data", error: expect.stringMatching(/^refused: 169\.254\.169\.254 is the cloud metadata address \(private, loopback/) },
      { url: "http://[::1]/", error: expect.stringMatching(/^refused: ::1 is a loopback address/) },
      { url: `${site.origin}/missing`, error: "HTTP 404 Not Found" },
      { url: `${site.origin}/to-private`, error: expect.stringMatching(/^refused \(after a redirect to http:\/\/10\.0\.0\.1\/admin\): 10\.0\.0\.1 is a private address/) },
      { url: `${site.origin}/data.zip`, error: "it is an application/zip file, not a page with text" },
    ]);
    for (const f of failed) expect(f.error).not.toContain("\n");
  });

  it("reports a page that is too slow or too large", async () => {
    const site = await serve({
      "/slow": () => {},
      "/big": (_req, res) => res.writeHead(200, { "content-type": "text/plain", "content-length": 4096 }).end("x".repeat(4096)),
    });
    const provider = createDirectWebProvider({ fetch: { allowHosts: [site.host], timeoutMs: 300, maxBytes: 1024 } });
    const { failed } = await provider.webVisit!([`${site.origin}/slow`, `${site.origin}/big`], {});
    expect(failed.map((f) => f.error)).toEqual(["no complete response within 300 ms", "the response is 4096 bytes, over the 1024-byte limit"]);
  });

  it("stops when the run is cancelled, instead of reporting a failed page", async () => {
    const site = await serve({ "/slow": () => {} });
    const provider = createDirectWebProvider({ fetch: { allowHosts: [site.host] } });
    const controller = new AbortController();
    setTimeout(() => controller.abort(new Error("run cancelled")), 100);
    await expect(provider.webVisit!([`${site.origin}/slow`], { signal: controller.signal })).rejects.toThrow("run cancelled");
  });
});

describe("summary helpers", () => {
  it("excerptForGoal keeps the opening and the paragraphs about the goal, in order, within the budget", () => {
    const text = ["Intro about the page.", ...Array(50).fill("Unrelated filler text here."), "The lamp was first lit in 1872.", ...Array(50).fill("More filler.")].join("\n\n");
    const excerpt = excerptForGoal(text, "When was the lamp first lit?", 300);
    expect(excerpt.length).toBeLessThanOrEqual(300 + 40);
    expect(excerpt.startsWith("Intro about the page.")).toBe(true);
    expect(excerpt).toContain("[…]\n\nThe lamp was first lit in 1872.");
  });

  it("formatSummary copes with a reply that has no evidence", () => {
    expect(formatSummary("Summary: The page is about parking.\nEvidence:\nnone", "page")).toBe(
      "Summary toward goal: The page is about parking.\nEvidence: none found on the page.",
    );
    expect(formatSummary("<think>…</think>", "page")).toBeUndefined();
  });
});
