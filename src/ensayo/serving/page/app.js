// The page of `ensayo serve`: one form per model, built from GET /v1/models. No library, nothing fetched
// from elsewhere. Audio inputs can be recorded from the microphone (Web Audio API) and are sent as WAV.
"use strict";

const el = (tag, attributes = {}, ...children) => {
  const node = document.createElement(tag);
  for (const [key, value] of Object.entries(attributes)) {
    if (key === "class") node.className = value; else if (key.startsWith("data-")) node.setAttribute(key, value);
    else node[key] = value;
  }
  node.append(...children);
  return node;
};

function describeError(body, status) {
  if (body && Array.isArray(body.detail)) {
    return body.detail.map((d) => `${(d.loc || []).join(" › ")}: ${d.msg}`).join("\n");
  }
  return (body && (body.detail || body.message)) || `error ${status}`;
}

function showProbabilities(answer, prediction) {
  answer.replaceChildren(...prediction.labels.map((label, i) => {
    const p = prediction.probabilities[i];
    return el("div", { class: "bar", "data-label": label, "data-probability": String(p) },
      el("span", { class: "name", title: label }, label),
      el("span", {}, el("div", { class: "fill", style: `width:${(100 * p).toFixed(1)}%` })),
      el("span", { class: "value" }, `${(100 * p).toFixed(1)}%`));
  }));
}

// ------------------------------------------------------------------------------- recording as WAV
function encodeWav(samples, rate) {
  const buffer = new ArrayBuffer(44 + samples.length * 2);
  const view = new DataView(buffer);
  const text = (offset, s) => { for (let i = 0; i < s.length; i++) view.setUint8(offset + i, s.charCodeAt(i)); };
  text(0, "RIFF"); view.setUint32(4, 36 + samples.length * 2, true); text(8, "WAVE"); text(12, "fmt ");
  view.setUint32(16, 16, true); view.setUint16(20, 1, true); view.setUint16(22, 1, true);
  view.setUint32(24, rate, true); view.setUint32(28, rate * 2, true); view.setUint16(32, 2, true);
  view.setUint16(34, 16, true); text(36, "data"); view.setUint32(40, samples.length * 2, true);
  samples.forEach((s, i) => view.setInt16(44 + i * 2, Math.max(-1, Math.min(1, s)) * 0x7fff, true));
  return new Blob([view], { type: "audio/wav" });
}

class Recorder {
  async start() {
    this.stream = await navigator.mediaDevices.getUserMedia({ audio: true });
    this.context = new AudioContext();
    const source = this.context.createMediaStreamSource(this.stream);
    this.node = this.context.createScriptProcessor(4096, 1, 1);
    this.chunks = [];
    this.node.onaudioprocess = (event) => this.chunks.push(new Float32Array(event.inputBuffer.getChannelData(0)));
    source.connect(this.node);
    this.node.connect(this.context.destination);
  }
  async stop() {
    this.node.disconnect();
    this.stream.getTracks().forEach((track) => track.stop());
    const rate = this.context.sampleRate;
    await this.context.close();
    const samples = new Float32Array(this.chunks.reduce((n, c) => n + c.length, 0));
    let offset = 0;
    for (const chunk of this.chunks) { samples.set(chunk, offset); offset += chunk.length; }
    return encodeWav(samples, rate);
  }
}

// ------------------------------------------------------------------------------------ the forms
function inputControl(model, input, recorded) {
  const id = `${model.name}-${input.name}`;
  const hint = `${input.kind}${input.multi ? ", a JSON list of names" : ""} · ${input.input_types.join(", ")}`;
  const label = el("label", { htmlFor: id }, `${input.name} `, el("small", {}, hint));
  if (input.kind === "file") {
    const chooser = el("input", { type: "file", id, name: input.name, accept: input.suffixes.join(",") });
    const parts = [label, chooser];
    if (input.media === "audio") {
      const status = el("span", { class: "status", "data-status": input.name }, "");
      const button = el("button", { type: "button", class: "record", "data-record": input.name }, "Record");
      let recorder = null;
      button.addEventListener("click", async () => {
        try {
          if (!recorder) {
            recorder = new Recorder();
            await recorder.start();
            button.classList.add("on"); button.textContent = "Stop"; status.textContent = "recording…";
          } else {
            const wav = await recorder.stop();
            recorder = null;
            recorded[input.name] = wav;
            button.classList.remove("on"); button.textContent = "Record";
            status.textContent = `recorded ${(wav.size / 1024).toFixed(0)} KiB: it replaces the chosen file`;
          }
        } catch (error) {
          recorder = null; status.textContent = `cannot record: ${error.message}`;
        }
      });
      parts.push(el("div", {}, button, status));
    }
    return parts;
  }
  if (input.kind === "number") return [label, el("input", { type: "number", step: "any", id, name: input.name })];
  return [label, el("input", { type: "text", id, name: input.name })];
}

function classifierForm(model) {
  const recorded = {};
  const answer = el("div", { class: "answer", "data-answer": model.name });
  const form = el("form", { "data-model": model.name });
  model.inputs.forEach((input) => form.append(...inputControl(model, input, recorded)));
  form.append(el("button", { type: "submit" }, "Predict"));
  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    answer.replaceChildren(el("span", { class: "status" }, "asking…"));
    const top = model.defaults.top_k;
    let request;
    if (model.content_type === "multipart/form-data") {
      const data = new FormData();
      for (const input of model.inputs) {
        const field = form.elements[input.name];
        if (input.kind === "file") {
          if (recorded[input.name]) data.append(input.name, recorded[input.name], "recording.wav");
          else if (field.files.length) data.append(input.name, field.files[0]);
        } else if (field.value !== "") data.append(input.name, field.value);
      }
      data.append("top_k", top);
      request = { method: "POST", body: data };
    } else {
      const row = {};
      for (const input of model.inputs) {
        const value = form.elements[input.name].value;
        if (input.kind === "number") row[input.name] = value === "" ? null : Number(value);
        else if (input.kind === "category") row[input.name] = value === "" ? null : value;
        else row[input.name] = value;
      }
      request = { method: "POST", headers: { "content-type": "application/json" },
                  body: JSON.stringify({ rows: [row], top_k: top }) };
    }
    const response = await fetch(model.endpoints.predict, request);
    const body = await response.json().catch(() => null);
    if (!response.ok) { answer.replaceChildren(el("div", { class: "error" }, describeError(body, response.status))); return; }
    showProbabilities(answer, body.predictions[0]);
  });
  return [form, answer];
}

// a generator's settings, each with the server's default (GET /v1/models gives them)
const SAMPLING = [
  ["length", "tokens", "1"], ["temperature", "0 is greedy", "any"], ["top_k", "0: every token", "1"],
  ["top_p", "1: the whole mass", "any"], ["seed", "the same seed, the same text", "1"],
];

function generatorForm(model) {
  const output = el("div", { class: "generated", "data-generated": model.name });
  const form = el("form", { "data-model": model.name },
    el("label", { htmlFor: `${model.name}-prompt` }, "prompt"),
    el("textarea", { id: `${model.name}-prompt`, name: "prompt" }));
  for (const [name, hint, step] of SAMPLING) {
    form.append(el("label", { htmlFor: `${model.name}-${name}` }, `${name.replace("_", "-")} `, el("small", {}, hint)),
      el("input", { type: "number", id: `${model.name}-${name}`, name, value: model.defaults[name], step }));
  }
  form.append(el("button", { type: "submit" }, "Generate"));
  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    const body = { prompt: form.elements.prompt.value };
    for (const [name] of SAMPLING) body[name] = Number(form.elements.namedItem(name).value);
    output.textContent = body.prompt;
    output.removeAttribute("data-done");
    const response = await fetch(model.endpoints.generate, { method: "POST", body: JSON.stringify(body),
                                                             headers: { "content-type": "application/json" } });
    if (!response.ok) {
      output.replaceChildren(el("div", { class: "error" }, describeError(await response.json().catch(() => null), response.status)));
      return;
    }
    const reader = response.body.pipeThrough(new TextDecoderStream()).getReader();
    let pending = "";
    for (;;) {
      const { value, done } = await reader.read();
      if (done) break;
      pending += value;
      const events = pending.split("\n\n");
      pending = events.pop();
      for (const block of events) {
        const kind = (block.match(/^event: (.*)$/m) || [])[1];
        const data = (block.match(/^data: (.*)$/m) || [])[1];
        if (kind === "token") output.textContent += JSON.parse(data);
        if (kind === "done") output.setAttribute("data-done", "true");
      }
    }
  });
  return [form, output];
}

async function main() {
  const root = document.getElementById("models");
  const response = await fetch("/v1/models");
  const { models } = await response.json();
  root.replaceChildren(...models.map((model) => {
    const scores = Object.entries(model.metrics).filter(([k]) => /balanced_accuracy|bits_per|perplexity/.test(k))
      .map(([k, v]) => `${k.replace("test/", "test ")} ${v.toFixed(3)}`).join(" · ");
    const card = el("section", { class: "model", "data-card": model.name },
      el("h2", {}, model.name),
      el("div", { class: "meta" }, `${model.model_type} · ${model.output}` +
        (model.classes ? ` · ${model.classes.length} classes` : ` · ${model.level} level`) +
        ` · trained ${model.trained_at}` + (scores ? ` · ${scores}` : "")));
    card.append(...(model.endpoints.predict ? classifierForm(model) : generatorForm(model)));
    return card;
  }));
}

main().catch((error) => {
  document.getElementById("models").replaceChildren(el("p", { class: "error" }, `cannot list the models: ${error}`));
});
