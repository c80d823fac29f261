// One scripted model server for many concurrent runs: each request is answered from the script of the run it belongs to, found by its question.
import type { RecordedRequest } from "../../src/cli/demo/http-recording.js";
import type { ScriptEntry, ScriptedModelServerOptions, ScriptedTurn } from "../../src/cli/demo/scripted-model-server.js";

export interface RoutedScenario {
  /** Text only this run's question contains. */
  key: string;
  /** Model turns of the run, in order (turn k answers the request with k assistant messages). */
  turns: ScriptEntry[];
  /** Reply to the planner's request (plan mode), if the run makes a plan. */
  plan?: ScriptEntry;
}

function userText(message: { content?: unknown }): string {
  const content = message.content;
  if (typeof content === "string") return content;
  if (Array.isArray(content)) return content.map((p) => (p as { text?: string }).text ?? "").join("\n");
  return "";
}

/**
 * A script entry that picks the scenario by the request's first user message and the turn by the
 * number of assistant messages before it, so runs may interleave in any order.
 */
export function routeByQuestion(scenarios: RoutedScenario[]): (req: RecordedRequest) => ScriptedTurn {
  return (req) => {
    const messages = (req.body?.messages ?? []) as Array<{ role: string; content?: unknown }>;
    const question = userText(messages.find((m) => m.role === "user") ?? {});
    const scenario = scenarios.find((s) => question.includes(s.key));
    if (!scenario) throw new Error(`no scenario for the question ${JSON.stringify(question.slice(0, 120))}`);
    const planning = userText(messages.find((m) => m.role === "system") ?? {}).startsWith("You are the planner");
    const entry = planning ? scenario.plan : scenario.turns[messages.filter((m) => m.role === "assistant").length];
    if (!entry) throw new Error(`scenario "${scenario.key}" has no ${planning ? "plan" : "turn for this request"}`);
    return typeof entry === "function" ? entry(req) : entry;
  };
}

/** Options for a scripted model server that answers every request through the router. */
export function routedServer(scenarios: RoutedScenario[]): ScriptedModelServerOptions {
  return { script: [routeByQuestion(scenarios)], onExhausted: "repeat-last" };
}
