// Image-tool node: runs one crop/zoom/rotate/flip/adjust/annotate/resize call on an image from the store, or one code cell in the sandbox.
import type { LangGraphRunnableConfig } from "@langchain/langgraph";
import { runSettings, type AgentDeps } from "../src/core/agent-deps.js";
import type { ImageRef } from "../src/core/images.js";
import type { PendingCall, ToolResult } from "../src/core/state.js";
import type { LoupeConfig } from "../src/core/config.js";
import { runCodeCall, sandboxOf } from "../tools/code/tool.js";
import { runImageOp, ToolArgumentError, type ImageToolName } from "../tools/image-ops.js";
import { emit } from "../src/core/events.js";

/** What a Send to this node carries: the call and the images it may refer to (for code, all of them). */
export interface ToolTask {
  call: PendingCall;
  images: ImageRef[];
}

type Outcome = Omit<ToolResult, "callId" | "ms">;

async function imageOp(deps: AgentDeps, { call, images }: ToolTask, settings: LoupeConfig): Promise<Outcome> {
  const imageId = String(call.args?.image ?? "");
  const source = images.find((i) => i.id === imageId);
  if (!source) throw new ToolArgumentError(`no image named ${imageId}`);
  const out = await runImageOp(deps.images, call.name as ImageToolName, call.args, source, { imageId, defaultCoords: settings.coords });
  return {
    ok: true,
    text: `${call.name} of ${imageId} done: ${out.op}`,
    images: [{ ...out.image, op: out.op, parent: imageId, box: out.box, stdev: out.stats.stdev }],
    urls: [],
  };
}

/** A code cell, run in the sandbox with every image of the run readable. */
function codeCall(deps: AgentDeps, { call, images }: ToolTask, settings: LoupeConfig, signal?: AbortSignal): Promise<Outcome> {
  return runCodeCall(String(call.args?.code ?? ""), images, { sandbox: sandboxOf(deps), store: deps.images, settings, signal });
}

export function createImageToolNode(deps: AgentDeps) {
  return async function imageTool(task: ToolTask, config: LangGraphRunnableConfig) {
    const settings = runSettings(deps, config.context);
    const { call } = task;
    const started = performance.now();
    emit(config, { event: "tool_start", callId: call.callId, name: call.name, arguments: call.args });
    let result: ToolResult;
    try {
      const out = call.kind === "code" ? await codeCall(deps, task, settings, config.signal) : await imageOp(deps, task, settings);
      result = { callId: call.callId, ...out, ms: performance.now() - started };
    } catch (err) {
      const message = err instanceof ToolArgumentError ? err.message : `${call.name} failed: ${(err as Error).message}`;
      result = { callId: call.callId, ok: false, text: `Error: ${message}`, images: [], urls: [], ms: performance.now() - started };
    }
    emit(config, {
      event: "tool_end",
      callId: call.callId,
      name: call.name,
      arguments: call.args,
      ok: result.ok,
      ms: Math.round(result.ms),
      summary: result.text,
      images: result.images.map((i) => ({ sha256: i.sha256, width: i.width, height: i.height })),
    });
    return { results: [result] };
  };
}
