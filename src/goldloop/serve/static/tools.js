// The tools overlay (approvers and admins): signal counts, agreement between reviewers, bulk
// repair (preview, then apply to exactly the previewed records) and, for admins, users.
import { api } from "./api.js";
import { refreshCounts } from "./counts.js";
import { renderDiff } from "./diff.js";
import { $, clear, el, notice, row } from "./dom.js";
import { kick } from "./feed.js";
import { newClientId } from "./outbox.js";
import { dropDecided } from "./review.js";
import { state } from "./state.js";

let bulkPreview = null;       // {spec, ids} of the last preview; apply sends exactly these ids

/** Show the tools overlay and load what it shows. */
export async function openTools() {
  $("help").hidden = true;
  $("tools").hidden = false;
  $("users-panel").hidden = state.me.role !== "admin";
  refreshCounts();
  try {
    const data = await api("GET", "/api/agreement");
    const body = $("agreement");
    clear(body);
    for (const pair of data.pairs) {
      body.appendChild(row([pair.a + " · " + pair.b, pair.items, pair.observed.toFixed(3),
                            pair.kappa === null ? "n/a (one category only)" : pair.kappa.toFixed(3)]));
    }
    if (!data.pairs.length) {
      body.appendChild(row(["no items decided by two reviewers yet (set [serve] overlap = 2)"]));
    }
  } catch (error) { notice(error.message); }
  if (state.me.role === "admin") loadUsers();
  $("bulk-pattern").focus();
}

function bulkSpec() {
  return {
    mode: $("bulk-mode").value, pattern: $("bulk-pattern").value, record_id: $("bulk-record").value.trim(),
    threshold: Number($("bulk-threshold").value), action: $("bulk-action").value,
    replacement: $("bulk-replacement").value, label: $("bulk-label").value.trim(),
  };
}

async function previewBulk(event) {
  event.preventDefault();
  const spec = bulkSpec();
  const body = $("bulk-rows");
  clear(body);
  $("bulk-apply").disabled = true;
  try {
    const data = await api("POST", "/api/bulk/preview", spec);
    bulkPreview = { spec, ids: data.record_ids };
    $("bulk-count").textContent = String(data.matches);
    $("bulk-apply").disabled = data.matches === 0;
    $("bulk-status").textContent = data.matches + " open candidate(s) would be " + (spec.action === "edit" ? "edited" : "rejected") +
      (data.matches > data.items.length ? "; the first " + data.items.length + " are shown" : "");
    for (const item of data.items) {
      const after = el("td", null, "diff");
      if (item.new_text !== null) {
        renderDiff(after, item.text, item.new_text);
        if (item.new_label !== item.label) after.appendChild(el("span", "  [" + item.new_label + "]"));
      } else after.textContent = "rejected";
      body.appendChild(row([item.record_id.slice(0, 12), "[" + item.label + "] " + item.text, after]));
    }
  } catch (error) { $("bulk-status").textContent = error.message; }
}

async function applyBulk() {
  if (!bulkPreview) return;
  $("bulk-apply").disabled = true;
  try {
    const result = await api("POST", "/api/bulk/apply",
      Object.assign({ client_id: newClientId(), record_ids: bulkPreview.ids }, bulkPreview.spec));
    $("bulk-status").textContent = "applied to " + result.applied + "; " + result.skipped + " no longer open or matching";
    clear($("bulk-rows"));
    bulkPreview = null;
    dropDecided(result.decisions.map((d) => d.record_id));
    refreshCounts();
    kick();
  } catch (error) { $("bulk-status").textContent = error.message; }
}

async function loadUsers() {
  try {
    const data = await api("GET", "/api/users");
    const body = $("users");
    clear(body);
    for (const user of data.users) body.appendChild(row([user.name, user.role, user.active ? "yes" : "no"]));
  } catch (error) { $("user-status").textContent = error.message; }
}

async function addUser(event) {
  event.preventDefault();
  try {
    await api("POST", "/api/users", { name: $("user-name").value.trim(), role: $("user-role").value, password: $("user-password").value });
    $("user-status").textContent = "saved " + $("user-name").value.trim();
    $("user-password").value = "";
    loadUsers();
  } catch (error) { $("user-status").textContent = error.message; }
}

/** Wire the overlay's forms. */
export function bindTools() {
  $("bulk-form").addEventListener("submit", previewBulk);
  $("bulk-apply").addEventListener("click", applyBulk);
  $("user-form").addEventListener("submit", addUser);
}
