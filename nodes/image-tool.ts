// Image-tool node: runs one crop/zoom/rotate/flip/adjust/annotate/resize call on an image from the store.
import type { LangGraphRunnableConfig } from "@langchain/langgraph";
import { runSettings, type AgentDeps } from "../src/core/agent-deps.js";
import type { ImageRef } from "../src/core/images.js";
import type { PendingCall, ToolResult } from "../src/core/state.js";
import { runImageOp, ToolArgumentError, type ImageToolName } from "../tools/image-ops.js";
import { emit } from "../src/core/events.js";

/** What a Send to this node carries: the call and the images it may refer to. */
export interface ToolTask {
  call: PendingCall;
  images: ImageRef[];
}

export function createImageToolNode(deps: AgentDeps) {
  return async function imageTool(task: ToolTask, config: LangGraphRunnableConfig) {
    const settings = runSettings(deps, config.context);
    const { call } = task;
    const started = performance.now();
    emit(config, { event: "tool_start", callId: call.callId, name: call.name, arguments: call.args });
    let result: ToolResult;
    const imageId = String(call.args?.image ?? "");
    const source = task.images.find((i) => i.id === imageId);
    try {
      if (!source) throw new ToolArgumentError(`no image named ${imageId}`);
      const out = await runImageOp(deps.images, call.name as ImageToolName, call.args, source, {
        imageId,
        defaultCoords: settings.coords,
      });
      result = {
        callId: call.callId,
        ok: true,
        text: `${call.name} of ${imageId} done: ${out.op}`,
        images: [{ ...out.image, op: out.op, parent: imageId, box: out.box, stdev: out.stats.stdev }],
        urls: [],
        ms: performance.now() - started,
      };
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
