// Model scripts for the benchmarks, keyed on the request: the step is the number of assistant
// messages already in the conversation, so every thread gets its own trajectory from one server.
import type { ModelClient } from "../../src/core/model.js";
import type { RecordedRequest, ScriptedTurn } from "../../src/cli/demo/scripted-model-server.js";

export interface CropScenario {
  /** Tool calls before the model answers. */
  steps: number;
  dialect: "tools" | "tags";
  /** Pads each <think> to about this many tokens (4 characters each), to give decode time a realistic length. */
  thinkTokens?: number;
  /** Side of each crop box in rel1000 units (default 400: 40% of the width and height). */
  boxSize?: number;
  answer?: string;
}

export const SCENARIO_ANSWER = "LOUPE-1";

/** Which step a chat request is at: the assistant turns it already carries. */
export function stepOf(body: { messages?: Array<{ role?: string }> } | null | undefined): number {
  return (body?.messages ?? []).filter((m) => m.role === "assistant").length;
}

/** A distinct rel1000 box for step k, walking over the image so no two calls are the same. */
export function cropBox(k: number, size = 400): [number, number, number, number] {
  const span = 1000 - size;
  const x = (k * 97) % (span + 1);
  const y = (k * 61) % (span + 1);
  return [x, y, x + size, y + size];
}

function think(k: number, tokens: number | undefined): string {
  const base = `Step ${k + 1}: the detail I need is still too small, so I look closer at the next region.`;
  if (!tokens) return base;
  let text = base;
  const filler = " I compare the lettering, the colours and the edges with what I saw before, and note what is still unclear.";
  while (text.length < tokens * 4) text += filler;
  return text.slice(0, tokens * 4);
}

/** The model turn for step k: a crop of img_0, or, after `steps` calls, the answer. */
export function cropTurn(s: CropScenario, k: number): ScriptedTurn {
  const answer = s.answer ?? SCENARIO_ANSWER;
  if (k >= s.steps) {
    return { content: `<think>${think(k, s.thinkTokens)} The sign reads ${answer}.</think>\n<answer>${answer}</answer>` };
  }
  const args = { image: "img_0", bbox: cropBox(k, s.boxSize) };
  if (s.dialect === "tags") {
    return { content: `<think>${think(k, s.thinkTokens)}</think>\n<tool_call>${JSON.stringify({ name: "crop", arguments: args })}</tool_call>` };
  }
  return { content: `<think>${think(k, s.thinkTokens)}</think>`, toolCalls: [{ id: `call_${k}`, name: "crop", arguments: args }] };
}

/** One script entry for a server with `onExhausted: "repeat-last"`: answers every request by its step. */
export function scenarioEntry(s: CropScenario): (req: RecordedRequest) => ScriptedTurn {
  return (req) => cropTurn(s, stepOf(req.body));
}

/**
 * How long the scripted server spends "generating" the reply to step k when streaming: the time to
 * first token, then each content / tool-call delta after the first paced at `tokensPerSecond`
 * (tokens ≈ characters / 4, in pieces of 16 characters), as the fixture does it.
 */
export function generationMs(s: CropScenario, k: number, ttftMs: number, tokensPerSecond: number): number {
  const turn = cropTurn(s, k);
  const pieces = (text: string) => {
    const cps = Array.from(text);
    const out: number[] = [];
    for (let i = 0; i < cps.length; i += 16) out.push(cps.slice(i, i + 16).length / 4);
    return out;
  };
  const tokens: number[] = [...pieces(turn.content ?? "")];
  for (const call of turn.toolCalls ?? []) {
    tokens.push(call.name.length / 4);
    tokens.push(...pieces(typeof call.arguments === "string" ? call.arguments : JSON.stringify(call.arguments)));
  }
  return ttftMs + tokens.slice(1).reduce((a, t) => a + (t / tokensPerSecond) * 1000, 0);
}

/**
 * A model client that answers in-process, turn k of the scenario for a conversation with k
 * assistant turns, the way the scripted server does but with no HTTP and no request building: for
 * timing what the graph and the nodes cost by themselves.
 */
export function scriptedClient(s: CropScenario): ModelClient {
  return {
    url: "in-process",
    modelName: async () => "scripted-vl",
    async complete(turns) {
      const turn = cropTurn(s, turns.filter((t) => t.role === "assistant").length);
      const toolCalls = (turn.toolCalls ?? []).map((c, i) => ({
        id: c.id ?? `call_${i}`,
        name: c.name,
        arguments: typeof c.arguments === "string" ? c.arguments : JSON.stringify(c.arguments),
      }));
      return { content: turn.content ?? "", toolCalls, finishReason: toolCalls.length ? "tool_calls" : "stop", usage: { promptTokens: 0, completionTokens: 0 }, ms: 0 };
    },
  };
}
