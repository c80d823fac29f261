// Reflect (run at the start of the planner node, see nodes/turn.ts): joins a turn's tool results, shows them to the model, checks each step the way R1V4 filtered its data, and enforces budgets.
import type { LangGraphRunnableConfig } from "@langchain/langgraph";
import { runSettings, type AgentDeps } from "../src/core/agent-deps.js";
import type { ImageRef } from "../src/core/images.js";
import { canonicalJson, formatErrorTurn, observationTurns, type CallObservation } from "../src/core/protocol.js";
import { clearedResults, isBudgetRefusal, type AgentStateValue, type ToolCallRecord, type Turn } from "../src/core/state.js";
import { EMPTY_USAGE } from "../src/core/state.js";
import { emit } from "../src/core/events.js";

/** A crop whose pixels barely vary (std dev below this, 0–255) is probably blank or missed its target. */
export const BLANK_STDEV = 3;
/** A box covering less than this share of its parent, or under 8 px a side, selects almost nothing. */
export const TINY_BOX_SHARE = 0.0005;
export const CONSECUTIVE_ERROR_LIMIT = 3;

export function createReflectNode(deps: AgentDeps) {
  return async function reflect(state: AgentStateValue, config: LangGraphRunnableConfig) {
    const settings = runSettings(deps, config.context);
    const usage = { ...(state.usage ?? EMPTY_USAGE) };
    const turns: Turn[] = [];
    const newImages: ImageRef[] = [];
    const records: ToolCallRecord[] = [];
    const notes: string[] = [];

    if (state.reply?.kind === "malformed") {
      usage.consecutiveErrors += 1;
      turns.push(formatErrorTurn(settings.dialect, state.reply.problem ?? "your reply could not be used."));
    } else {
      const results = new Map((state.results ?? []).map((r) => [r.callId, r]));
      const allImages = [...(state.images ?? [])];
      const previous = new Map((state.toolCalls ?? []).map((c) => [canonicalJson([c.name, c.arguments]), c.step]));
      const observations: CallObservation[] = [];
      let failures = 0;
      for (const call of (state.pending ?? [])) {
        const result = results.get(call.callId);
        const ok = call.kind !== "invalid" && !!result?.ok;
        const text = call.kind === "invalid" ? `Error: ${call.error}` : (result?.text ?? "Error: the call produced no result.");
        const step = (state.toolCalls ?? []).length + records.length + 1;
        const shown: CallObservation["images"] = [];
        const ids: string[] = [];
        for (const produced of result?.images ?? []) {
          const ref: ImageRef = {
            id: `img_${allImages.length}`,
            sha256: produced.sha256,
            mime: produced.mime,
            width: produced.width,
            height: produced.height,
            parent: produced.parent,
            op: produced.op,
          };
          allImages.push(ref);
          newImages.push(ref);
          ids.push(ref.id);
          if (produced.stdev !== undefined && produced.stdev < BLANK_STDEV) {
            notes.push(`${ref.id} is nearly uniform (pixel std dev ${produced.stdev.toFixed(1)}): the box probably missed what you were looking for; check the coordinates (${settings.coords} by default).`);
          }
          const parent = produced.parent ? allImages.find((i) => i.id === produced.parent) : undefined;
          if (produced.box && parent) {
            const share = (produced.box.width * produced.box.height) / (parent.width * parent.height);
            if (share < TINY_BOX_SHARE || produced.box.width < 8 || produced.box.height < 8) {
              notes.push(`the box for ${ref.id} selects almost nothing (${produced.box.width}×${produced.box.height} px of ${parent.id}'s ${parent.width}×${parent.height}); make sure the box uses the right coordinate convention.`);
            }
          }
          if (usage.imagesInContext < settings.maxImagesInContext) {
            const view = await deps.images.modelView(produced, settings.maxPixels);
            shown.push({ ref, view });
            usage.imagesInContext += 1;
          } else {
            notes.push(`${ref.id} was made but is not shown: the conversation already holds ${settings.maxImagesInContext} images. Answer from what you have seen, or search.`);
          }
        }
        if (ok && result?.resultCount === 0) {
          notes.push(`${call.name} found nothing; try other wording or another approach.`);
        }
        const key = canonicalJson([call.name, call.args]);
        const earlier = previous.get(key);
        if (earlier !== undefined && call.args) {
          notes.push(`call ${step} repeats step ${earlier} exactly; its result is above, so change something instead of repeating it.`);
        }
        previous.set(key, step);
        if (!ok) failures++;
        observations.push({ call, text, images: shown });
        records.push({
          step,
          turn: usage.turns - 1,
          name: call.name,
          arguments: call.args,
          ok,
          ms: Math.round(result?.ms ?? 0),
          images: ids,
          ...(ok ? {} : { error: text.replace(/^Error: /, "").slice(0, 500) }),
          urls: result?.urls ?? [],
        });
        emit(config, { event: "tool_result", callId: call.callId, name: call.name, step, ok, images: allImages.filter((i) => ids.includes(i.id)) });
      }
      usage.toolCalls += records.filter((r) => !isBudgetRefusal(r)).length;
      usage.consecutiveErrors = failures === (state.pending ?? []).length && failures > 0 ? usage.consecutiveErrors + failures : 0;
      const left = settings.maxToolCalls - usage.toolCalls;
      if (left > 0 && left <= 2) notes.push(`${left} tool call${left === 1 ? "" : "s"} left before you must answer.`);
      if (usage.consecutiveErrors >= CONSECUTIVE_ERROR_LIMIT) {
        notes.push(`${usage.consecutiveErrors} failed steps in a row: re-read the tool descriptions and the error messages, and change your approach.`);
      }
      turns.push(...observationTurns(settings.dialect, observations, notes));
    }

    let exhausted: string | null = null;
    if (usage.toolCalls >= settings.maxToolCalls && state.reply?.kind === "calls") {
      exhausted = `You have used all ${settings.maxToolCalls} tool calls.`;
    } else if (usage.turns >= settings.maxTurns) {
      exhausted = `You have used all ${settings.maxTurns} turns.`;
    }
    return {
      conversation: turns,
      images: newImages,
      toolCalls: records,
      results: clearedResults(),
      pending: [],
      reply: null,
      usage,
      exhausted,
    };
  };
}
