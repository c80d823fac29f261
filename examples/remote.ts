// Example: a parent graph that uses the deployed Loupe agent (`npm run dev` or a `langgraph build` server) through RemoteGraph, then writes a Markdown report with links to the images the agent made.
// Run: npx tsx examples/remote.ts http://127.0.0.1:2024 "What does the sign say?" https://example.org/photo.jpg
import { randomUUID } from "node:crypto";
import { END, MemorySaver, START, StateGraph, type LangGraphRunnableConfig } from "@langchain/langgraph";
import { RemoteGraph } from "@langchain/langgraph/remote";
import { z } from "zod/v4";
import { AgentOutput, type ImageRef } from "../src/index.js";

/** The parent's state: the agent's input and output (the RemoteGraph node reads and writes these keys), and the report. */
export const ReportState = AgentOutput.partial().extend({
  question: z.string(),
  imageSources: z.array(z.string()).default([]),
  report: z.string().nullable().default(null),
});
type ReportStateValue = z.infer<typeof ReportState>;

/** The thread's images with fetchable URLs, from the server's http.app route (GET /threads/<id>/images). */
async function imageUrls(serverUrl: string, threadId: string, headers: Record<string, string>): Promise<Map<string, string>> {
  const res = await fetch(`${serverUrl.replace(/\/+$/, "")}/threads/${threadId}/images`, { headers });
  if (!res.ok) throw new Error(`GET /threads/${threadId}/images: HTTP ${res.status}`);
  const body = (await res.json()) as { images: Array<ImageRef & { url: string }> };
  return new Map(body.images.map((i) => [i.id, i.url]));
}

/**
 * The report graph: node `agent` is the deployed agent itself (a RemoteGraph used as a subgraph
 * node; it runs on the server, in the server thread with the parent's thread id), node `write_report`
 * formats its answer, sources and the images it made.
 */
export function buildReportGraph(options: { url: string; apiKey?: string; graphId?: string }) {
  const headers: Record<string, string> = options.apiKey ? { "x-api-key": options.apiKey } : {};
  const agent = new RemoteGraph({ graphId: options.graphId ?? "agent", url: options.url, apiKey: options.apiKey });
  return new StateGraph(ReportState)
    .addNode("agent", agent)
    .addNode("write_report", async (state: ReportStateValue, config: LangGraphRunnableConfig) => {
      const threadId = config.configurable?.thread_id as string;
      const urls = await imageUrls(options.url, threadId, headers);
      const lines = [`## ${state.question}`, "", state.final?.answer ?? "(no answer)"];
      const sources = (state.final?.citations ?? []).filter((c) => c.type === "url");
      if (sources.length) lines.push("", "Sources:", ...sources.map((c) => `- ${c.type === "url" ? c.url : ""}`));
      const made = (state.images ?? []).filter((i) => i.op);
      if (made.length) lines.push("", "Images the agent made:", ...made.map((i) => `- ${i.id} (${i.op}): ![${i.id}](${urls.get(i.id)})`));
      return { report: lines.join("\n") };
    })
    .addEdge(START, "agent")
    .addEdge("agent", "write_report")
    .addEdge("write_report", END);
}

async function main(argv: string[]) {
  const [url, question, ...images] = argv;
  if (!url || !question) {
    process.stderr.write('usage: npx tsx examples/remote.ts SERVER_URL "question" [image URL ...]\n');
    return 2;
  }
  const graph = buildReportGraph({ url, apiKey: process.env.LANGGRAPH_API_KEY }).compile({ checkpointer: new MemorySaver() });
  // Server threads are named by UUID; the remote agent runs in the thread with this id.
  const out = await graph.invoke({ question, imageSources: images }, { configurable: { thread_id: randomUUID() } });
  process.stdout.write(`${out.report}\n`);
  return 0;
}

if (import.meta.url === `file://${process.argv[1]}`) process.exitCode = await main(process.argv.slice(2));
