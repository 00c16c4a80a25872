// The plan's DAG: laid out by dagre, drawn as SVG, each node coloured by its action's status.

import { graphlib, layout } from "./vendor/dagre/dagre.esm.js";
import { fmtDuration, s } from "./dom.js";
import { itemsDone } from "./events.js";

const NODE_WIDTH = 188;
const NODE_HEIGHT = 56;
const MAX_LABEL = 24;

function clip(text, length) {
  return text.length > length ? `${text.slice(0, length - 1)}…` : text;
}

/** The second line of a node: what its action is doing or how it ended. */
export function nodeDetail(spec, action) {
  const type = spec.type && spec.type !== "http" ? `${spec.type} · ` : "";
  if (!action) return `${type}pending`;
  switch (action.status) {
    case "running":
      if (action.items) return `${type}items ${itemsDone(action.items)}/${action.items.count}`;
      if (action.child_execution_id) return `${type}child running`;
      return `${type}running · attempt ${Math.max(action.attempts, 1)}`;
    case "waiting":
      return action.wait && action.wait.reason === "sleep" ? `${type}sleeping` : `${type}waiting for resume`;
    case "completed":
      return `${type}completed · ${fmtDuration(action.duration_ms)}`;
    case "failed":
      return `${type}failed · ${action.error ? action.error.code : "?"}`;
    case "skipped":
      return `${type}skipped · ${action.skip_reason || ""}`;
    default:
      return `${type}${action.status}`;
  }
}

function edgePath(points) {
  return points.map((p, i) => `${i ? "L" : "M"}${p.x.toFixed(1)},${p.y.toFixed(1)}`).join(" ");
}

/** The DAG view of one plan: `element` is its SVG; `update(state)` recolours it. */
export class DagView {
  constructor(plan, { onSelect }) {
    this.onSelect = onSelect;
    this.specs = new Map(plan.actions.map((a) => [a.id, a]));
    this.nodes = new Map();
    this.selected = null;
    this.element = this.draw(plan);
  }

  layout(plan) {
    const graph = new graphlib.Graph();
    graph.setGraph({ rankdir: "LR", nodesep: 22, ranksep: 56, marginx: 12, marginy: 12 });
    graph.setDefaultEdgeLabel(() => ({}));
    for (const action of plan.actions) graph.setNode(action.id, { width: NODE_WIDTH, height: NODE_HEIGHT });
    for (const action of plan.actions) {
      for (const upstream of action.depends_on || []) {
        if (this.specs.has(upstream)) graph.setEdge(upstream, action.id, { kind: "dependency" });
      }
    }
    for (const action of plan.actions) {
      for (const route of action.on_error || []) {
        if (this.specs.has(route) && !graph.hasEdge(action.id, route)) {
          graph.setEdge(action.id, route, { kind: "route" });
        }
      }
    }
    layout(graph);
    return graph;
  }

  draw(plan) {
    const graph = this.layout(plan);
    const { width, height } = graph.graph();
    const svg = s("svg", {
      class: "dag",
      width: Math.ceil(width),
      height: Math.ceil(height),
      viewBox: `0 0 ${Math.ceil(width)} ${Math.ceil(height)}`,
      role: "group",
      "aria-label": `DAG of plan ${plan.id}`,
    });
    svg.append(
      s("defs", {},
        s("marker", { id: "arrow", viewBox: "0 0 10 10", refX: 10, refY: 5, markerWidth: 7, markerHeight: 7, orient: "auto-start-reverse" },
          s("path", { d: "M0,0 L10,5 L0,10 z", class: "arrow" }))),
    );
    for (const edge of graph.edges()) {
      const data = graph.edge(edge);
      svg.append(s("path", {
        class: `edge edge-${data.kind}`,
        d: edgePath(data.points),
        "marker-end": "url(#arrow)",
        data: { from: edge.v, to: edge.w },
      }));
    }
    for (const id of graph.nodes()) svg.append(this.node(id, graph.node(id)));
    return svg;
  }

  node(id, box) {
    const x = box.x - NODE_WIDTH / 2;
    const y = box.y - NODE_HEIGHT / 2;
    const spec = this.specs.get(id);
    const detail = s("text", { class: "node-detail", x: x + 10, y: y + 41, text: nodeDetail(spec, null) });
    const progress = s("rect", { class: "node-progress", x: x + 1, y: y + NODE_HEIGHT - 5, width: 0, height: 4 });
    const title = s("title", { text: id });
    const group = s("g", {
      class: "node",
      tabindex: 0,
      role: "button",
      "aria-label": `action ${id}`,
      data: { action: id, status: "pending" },
      on: {
        click: () => this.onSelect(id),
        keydown: (event) => {
          if (event.key === "Enter" || event.key === " ") {
            event.preventDefault();
            this.onSelect(id);
          }
        },
      },
    },
    title,
    s("rect", { class: "node-box", x, y, width: NODE_WIDTH, height: NODE_HEIGHT, rx: 6, ry: 6 }),
    s("text", { class: "node-label", x: x + 10, y: y + 21, text: clip(id, MAX_LABEL) }),
    detail,
    progress);
    this.nodes.set(id, { group, detail, progress, title });
    return group;
  }

  /** Colour and label every node as `state` has it (missing actions: pending). */
  update(state) {
    const actions = (state && state.actions) || {};
    for (const [id, node] of this.nodes) {
      const action = actions[id] || null;
      const status = action ? action.status : "pending";
      const text = nodeDetail(this.specs.get(id), action);
      node.group.dataset.status = status;
      node.group.setAttribute("aria-label", `action ${id}: ${text}`);
      node.detail.textContent = text;
      node.title.textContent = `${id}: ${text}`;
      const items = action && action.items;
      const share = items && items.count ? itemsDone(items) / items.count : 0;
      node.progress.setAttribute("width", String(Math.round((NODE_WIDTH - 2) * share)));
    }
  }

  /** Mark `id` as the selected node (null: none). */
  select(id) {
    if (this.selected) this.nodes.get(this.selected)?.group.classList.remove("selected");
    this.selected = id && this.nodes.has(id) ? id : null;
    if (this.selected) this.nodes.get(this.selected).group.classList.add("selected");
  }
}
