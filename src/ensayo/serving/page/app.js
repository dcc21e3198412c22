// The page of `ensayo serve`: one form per model, built from GET /v1/models (its inputs, its defaults, its
// examples). No library, nothing fetched from elsewhere. Audio inputs can be recorded from the microphone
// (an AudioWorklet, recorder.js) and are sent as WAV; what was recorded is shown and can be played back.
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

// ---------------------------------------------------------------------------------- words for people
const SAID = [  // pydantic's messages, said for the person who typed the value
  [/^String should have at least 1 character/, "is empty: type something"],
  [/^String should match pattern/, "is empty: type something"],
  [/^Field required/, "is missing"],
  [/^Input should be a valid number/, "should be a number"],
];

function describeError(body, status) {
  if (body && Array.isArray(body.detail)) {
    return body.detail.map((d) => {
      const where = (d.loc || []).filter((part) => !["body", "rows", "query", "header"].includes(part)
                                                    && typeof part !== "number");
      const rule = SAID.find(([pattern]) => pattern.test(d.msg || ""));
      const what = rule ? rule[1] : d.msg;
      return where.length ? `${where[where.length - 1]}: ${what}` : what;
    }).join("\n");
  }
  return (body && (body.message || body.detail)) || `the server answered with error ${status}`;
}

const METRICS = [  // a run's test metrics as a person reads them, with their bootstrap interval
  ["balanced_accuracy", "balanced accuracy", 3], ["accuracy", "accuracy", 3],
  ["bits_per_char", "bits per character", 3], ["perplexity", "perplexity", 2],
];

function readableMetrics(metrics) {
  return METRICS.filter(([key]) => `test/${key}` in metrics).slice(0, 2).map(([key, name, digits]) => {
    const value = metrics[`test/${key}`];
    const low = metrics[`test/${key}_low`], high = metrics[`test/${key}_high`];
    const interval = low !== undefined && high !== undefined ? ` [${low.toFixed(digits)}, ${high.toFixed(digits)}]` : "";
    return `${name} ${value.toFixed(digits)}${interval}`;
  }).join(" · ");
}

function showProbabilities(answer, prediction) {
  const bars = prediction.labels.map((label, i) => {
    const p = prediction.probabilities[i];
    return el("div", { class: "bar", "data-label": label, "data-probability": String(p) },
      el("span", { class: "name" }, label),
      el("span", {}, el("div", { class: "fill", style: `width:${(100 * p).toFixed(1)}%` })),
      el("span", { class: "value" }, `${(100 * p).toFixed(1)}%`));
  });
  // how the input was read, where the model says (a recording with more speech than it hears)
  const note = prediction.note ? [el("p", { class: "note" }, prediction.note)] : [];
  answer.replaceChildren(...bars, ...note);
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

class Recorder {  // the microphone's samples, gathered by an AudioWorklet off the page's thread
  async start() {
    this.stream = await navigator.mediaDevices.getUserMedia({ audio: true });
    this.context = new AudioContext();
    await this.context.audioWorklet.addModule("/page/recorder.js");
    const source = this.context.createMediaStreamSource(this.stream);
    this.node = new AudioWorkletNode(this.context, "ensayo-recorder");
    this.chunks = [];
    this.node.port.onmessage = (event) => this.chunks.push(event.data);
    source.connect(this.node);
  }
  async stop() {
    this.node.port.postMessage("stop");
    this.node.disconnect();
    this.stream.getTracks().forEach((track) => track.stop());
    const rate = this.context.sampleRate;
    await this.context.close();
    const samples = new Float32Array(this.chunks.reduce((n, c) => n + c.length, 0));
    let offset = 0;
    for (const chunk of this.chunks) { samples.set(chunk, offset); offset += chunk.length; }
    return { wav: encodeWav(samples, rate), samples, rate };
  }
}

function drawWaveform(canvas, samples) {  // the loudest sample of each column, above and below the middle
  const context = canvas.getContext("2d");
  const { width, height } = canvas;
  context.clearRect(0, 0, width, height);
  context.fillStyle = "#1976d2";
  const step = Math.max(1, Math.floor(samples.length / width));
  for (let x = 0; x < width; x++) {
    let peak = 0;
    for (let i = x * step; i < Math.min((x + 1) * step, samples.length); i++) peak = Math.max(peak, Math.abs(samples[i]));
    const bar = Math.max(1, peak * height);
    context.fillRect(x, (height - bar) / 2, 1, bar);
  }
}

function recording(input, recorded) {
  // a Record button, and what was recorded: its waveform and a player, shown until the next recording
  const status = el("span", { class: "status", "data-status": input.name }, "");
  const button = el("button", { type: "button", class: "record", "data-record": input.name }, "Record");
  const wave = el("canvas", { class: "waveform", width: 600, height: 60, "data-waveform": input.name, hidden: true });
  const player = el("audio", { controls: true, "data-player": input.name, hidden: true });
  let recorder = null;
  button.addEventListener("click", async () => {
    try {
      if (!recorder) {
        recorder = new Recorder();
        await recorder.start();
        button.classList.add("on"); button.textContent = "Stop"; status.textContent = "recording… speak, then Stop";
      } else {
        const { wav, samples, rate } = await recorder.stop();
        recorder = null;
        recorded[input.name] = wav;
        button.classList.remove("on"); button.textContent = "Record";
        status.textContent = `recorded ${(samples.length / rate).toFixed(1)} s: it replaces the chosen file`;
        wave.hidden = false; player.hidden = false;
        drawWaveform(wave, samples);
        player.src = URL.createObjectURL(wav);
        wave.setAttribute("data-seconds", (samples.length / rate).toFixed(2));
      }
    } catch (error) {
      recorder = null; status.textContent = `cannot record: ${error.message}`;
    }
  });
  return el("div", { class: "recording" }, el("div", {}, button, status), wave, player);
}

// ------------------------------------------------------------------------------------ the forms
function inputControl(model, input, recorded) {
  const id = `${model.name}-${input.name}`;
  const hint = `${input.kind}${input.multi ? ", a JSON list of names" : ""} · ${input.input_types.join(", ")}`;
  const label = el("label", { htmlFor: id }, `${input.name} `, el("small", {}, hint));
  if (input.kind === "file") {
    const chooser = el("input", { type: "file", id, name: input.name, accept: input.suffixes.join(",") });
    const parts = [label, chooser];
    if (input.media === "audio") parts.push(recording(input, recorded));
    return parts;
  }
  if (input.kind === "number") return [label, el("input", { type: "number", step: "any", id, name: input.name })];
  return [label, el("input", { type: "text", id, name: input.name })];
}

function examplesBar(model, use) {
  // one button per example row of the test split: it fills the form (a file example is fetched from the server)
  if (!model.examples || !model.examples.length) return [];
  return [el("div", { class: "examples" }, el("small", {}, "try an example: "),
    ...model.examples.map((example, index) => {
      const button = el("button", { type: "button", class: "example", "data-example": String(index) },
                        `example ${index + 1}`);
      button.addEventListener("click", () => use(example));
      return button;
    }))];
}

function classifierForm(model) {
  const recorded = {};
  const answer = el("div", { class: "answer", "data-answer": model.name });
  const form = el("form", { "data-model": model.name });
  model.inputs.forEach((input) => form.append(...inputControl(model, input, recorded)));
  form.append(el("button", { type: "submit" }, "Predict"));
  const fill = async (example) => {
    for (const input of model.inputs) {
      const value = example[input.name];
      if (input.kind === "file") {
        if (value) recorded[input.name] = await (await fetch(value)).blob();
        const status = form.querySelector(`[data-status="${input.name}"]`);
        if (status && value) status.textContent = "the example's file will be sent";
      } else {
        form.elements[input.name].value = value === null || value === undefined ? "" :
          (Array.isArray(value) ? JSON.stringify(value) : String(value));
      }
    }
    form.requestSubmit();
  };
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
          if (recorded[input.name]) data.append(input.name, recorded[input.name], `recorded-${input.name}.wav`);
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
  return [...examplesBar(model, fill), form, answer];
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
  const fill = (example) => { form.elements.prompt.value = example.prompt || ""; form.requestSubmit(); };
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
  return [...examplesBar(model, fill), form, output];
}

async function main() {
  const root = document.getElementById("models");
  const response = await fetch("/v1/models");
  const { models } = await response.json();
  root.replaceChildren(...models.map((model) => {
    const scores = readableMetrics(model.metrics);
    const card = el("section", { class: "model", "data-card": model.name },
      el("h2", {}, model.name),
      ...(model.description ? [el("p", { class: "description" }, model.description)] : []),
      el("div", { class: "meta" }, `${model.model_type} · ${model.output}` +
        (model.classes ? ` · ${model.classes.length} classes` : ` · ${model.level} level`) +
        ` · trained ${model.trained_at}` + (scores ? ` · test ${scores}` : "")));
    card.append(...(model.endpoints.predict ? classifierForm(model) : generatorForm(model)));
    return card;
  }));
}

main().catch((error) => {
  document.getElementById("models").replaceChildren(el("p", { class: "error" }, `cannot list the models: ${error}`));
});
