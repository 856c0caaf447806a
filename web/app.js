// The chat page's behaviour: talks to the server with the official Socket.IO
// client (global `io` from socket.io/socket.io.js) using the events described
// in docs/protocol.md, and renders everything with textContent.

const DEFAULT_ROOM = "general";
const ACK_TIMEOUT_MS = 10000;
const TYPING_IDLE_MS = 1500; // stop typing after this much quiet
const TYPING_EXPIRE_MS = 6000; // forget a typer whose `stop typing` got lost
const POLL_MS = 5000; // rooms list and cluster view refresh

const $ = (id) => document.getElementById(id);

// Everything the page knows. Rooms keep their messages so switching rooms
// does not lose them (the server keeps no history).
const state = {
  username: "",
  userId: "",
  replica: "",
  loggedIn: false,
  current: DEFAULT_ROOM,
  rooms: new Map(), // name -> {messages: Element[], users: Map, typing: Map, unread}
  allRooms: [],
  numUsers: 0,
};

// Rooms the user wants to be in, in join order; restored after a reconnect.
const wanted = [DEFAULT_ROOM];

// ---------- small DOM helpers ----------

function el(tag, cls, text) {
  const e = document.createElement(tag);
  if (cls) e.className = cls;
  if (text !== undefined) e.textContent = String(text);
  return e;
}

// A stable, pleasant color per replica id, so the badge tells replicas apart.
function replicaHue(id) {
  let h = 0;
  for (const ch of String(id)) h = (h * 31 + ch.codePointAt(0)) >>> 0;
  return h % 360;
}

function replicaBadge(id) {
  const b = el("span", "replica-badge", id || "?");
  paintBadge(b, id);
  return b;
}

function paintBadge(b, id) {
  b.textContent = id || "?";
  b.dataset.replica = id || "";
  b.style.setProperty("--hue", String(replicaHue(id || "")));
  b.title = `served by replica ${id}`;
}

function fmtTime(ts) {
  return new Date(ts).toLocaleTimeString([], { hour: "2-digit", minute: "2-digit" });
}

let toastTimer = 0;
function toast(text) {
  const t = $("toast");
  t.textContent = text;
  t.hidden = false;
  clearTimeout(toastTimer);
  toastTimer = setTimeout(() => (t.hidden = true), 5000);
}

function errorText(err) {
  if (!err) return "Unknown error";
  const code = err.code || "ERROR";
  return `${err.message || code} (${code})`;
}

// ---------- rooms ----------

function room(name) {
  let r = state.rooms.get(name);
  if (!r) {
    // seen: ids of the messages shown, so history after a (re)join adds only what is new.
    r = { messages: [], users: new Map(), typing: new Map(), unread: 0, seen: new Set() };
    state.rooms.set(name, r);
  }
  return r;
}

function renderRoomLists() {
  const joined = $("joined-rooms");
  joined.replaceChildren();
  for (const name of wanted) {
    const r = room(name);
    const li = el("li", name === state.current ? "active" : "");
    li.dataset.room = name;
    const btn = el("button", "room-name", `# ${name}`);
    btn.type = "button";
    btn.addEventListener("click", () => switchRoom(name));
    li.append(btn);
    if (r.unread > 0) li.append(el("span", "unread", r.unread));
    const leave = el("button", "leave", "×");
    leave.type = "button";
    leave.title = `Leave ${name}`;
    leave.setAttribute("aria-label", `Leave ${name}`);
    leave.addEventListener("click", () => leaveRoom(name));
    li.append(leave);
    joined.append(li);
  }

  const others = $("all-rooms");
  others.replaceChildren();
  const rest = state.allRooms.filter((r) => !wanted.includes(r.name));
  for (const r of rest) {
    const li = el("li");
    li.dataset.room = r.name;
    const btn = el("button", "room-name", `# ${r.name}`);
    btn.type = "button";
    btn.title = `Join ${r.name}`;
    btn.addEventListener("click", () => joinRoom(r.name));
    li.append(btn, el("span", "count", r.members));
    others.append(li);
  }
  if (rest.length === 0) others.append(el("li", "muted small empty", "No other rooms yet"));
  $("rooms-count").textContent = state.allRooms.length ? `(${state.allRooms.length})` : "";
}

function switchRoom(name) {
  state.current = name;
  room(name).unread = 0;
  $("room-title").textContent = `# ${name}`;
  $("messages").replaceChildren(...room(name).messages);
  scrollDown(true);
  renderRoomLists();
  renderUsers();
  renderTyping();
  stopTyping();
  document.body.classList.remove("show-rooms", "show-people");
  if (state.loggedIn) refreshUsers(name);
  $("message-input").focus();
}

async function joinRoom(name) {
  name = name.trim();
  if (!name) return;
  const res = await request("join room", name);
  if (!res.ok) return toast(`Could not join “${name}”: ${errorText(res.error)}`);
  if (!wanted.includes(res.room)) wanted.push(res.room);
  setUsers(res.room, res.users);
  showHistory(res.room, res.history);
  systemLine(res.room, `You joined # ${res.room}`);
  switchRoom(res.room);
  refreshRooms();
}

async function leaveRoom(name) {
  const res = await request("leave room", name);
  // NOT_IN_ROOM means the server already agrees we are out.
  if (!res.ok && res.error?.code !== "NOT_IN_ROOM") return toast(`Could not leave: ${errorText(res.error)}`);
  const i = wanted.indexOf(name);
  if (i >= 0) wanted.splice(i, 1);
  state.rooms.delete(name);
  if (state.current === name) switchRoom(wanted[0] || DEFAULT_ROOM);
  else renderRoomLists();
  if (wanted.length === 0) showNoRoom();
  refreshRooms();
}

function showNoRoom() {
  $("room-title").textContent = "No room";
  $("messages").replaceChildren(el("li", "system", "You are in no room. Join one on the left."));
}

async function refreshRooms() {
  if (!state.loggedIn) return;
  const res = await request("list rooms");
  if (!res.ok) return;
  state.allRooms = [...res.rooms].sort((a, b) => b.members - a.members || a.name.localeCompare(b.name));
  renderRoomLists();
}

// ---------- users and typing ----------

function setUsers(name, users) {
  const r = room(name);
  r.users = new Map(users.map((u) => [u.userId, u]));
  if (name === state.current) renderUsers();
}

async function refreshUsers(name) {
  const res = await request("list users", name);
  if (res.ok) setUsers(res.room, res.users);
}

function renderUsers() {
  const list = $("users");
  list.replaceChildren();
  const r = state.rooms.get(state.current);
  const users = r ? [...r.users.values()] : [];
  users.sort((a, b) => a.username.localeCompare(b.username));
  for (const u of users) {
    const li = el("li", u.userId === state.userId ? "self" : "");
    li.dataset.userId = u.userId;
    li.append(el("span", "avatar", initial(u.username)), el("span", "uname", u.username));
    if (u.userId === state.userId) li.append(el("span", "you", "you"));
    li.append(replicaBadge(u.replica));
    list.append(li);
  }
  $("users-count").textContent = `(${users.length})`;
  $("room-members").textContent = `${users.length} online`;
}

function initial(name) {
  return (String(name).trim()[0] || "?").toUpperCase();
}

function setTyping(data, on) {
  const r = state.rooms.get(data.room || DEFAULT_ROOM);
  if (!r) return;
  clearTimeout(r.typing.get(data.userId)?.timer);
  if (on) {
    const timer = setTimeout(() => setTyping(data, false), TYPING_EXPIRE_MS);
    r.typing.set(data.userId, { username: data.username, timer });
  } else {
    r.typing.delete(data.userId);
  }
  if ((data.room || DEFAULT_ROOM) === state.current) renderTyping();
}

function renderTyping() {
  const r = state.rooms.get(state.current);
  const names = r ? [...r.typing.values()].map((t) => t.username) : [];
  const box = $("typing");
  if (names.length === 0) box.textContent = "";
  else if (names.length === 1) box.textContent = `${names[0]} is typing…`;
  else if (names.length === 2) box.textContent = `${names[0]} and ${names[1]} are typing…`;
  else box.textContent = `${names.length} people are typing…`;
}

// Our own typing state: one `typing` when it starts, one `stop typing` after
// TYPING_IDLE_MS of quiet or when the message is sent.
let typingRoom = "";
let typingTimer = 0;
function onInput() {
  if (!state.loggedIn || !wanted.includes(state.current)) return;
  if (!typingRoom) {
    typingRoom = state.current;
    socket.emit("typing", { room: typingRoom });
  }
  clearTimeout(typingTimer);
  typingTimer = setTimeout(stopTyping, TYPING_IDLE_MS);
}
function stopTyping() {
  clearTimeout(typingTimer);
  if (typingRoom && state.loggedIn) socket.emit("stop typing", { room: typingRoom });
  typingRoom = "";
}

// ---------- messages ----------

function messageItem({ id, offset, username, userId, message, ts, replica, mine }) {
  const li = el("li", mine ? "msg mine" : "msg");
  if (userId) li.dataset.userId = userId;
  if (id) li.dataset.id = id;
  if (offset) li.dataset.offset = offset;
  const head = el("div", "meta");
  head.append(el("span", "author", username));
  head.append(replicaBadge(replica));
  const time = el("time", "time", ts ? fmtTime(ts) : "");
  if (ts) time.dateTime = new Date(ts).toISOString();
  head.append(time);
  li.append(head, el("div", "text", message));
  return li;
}

function addItem(name, li) {
  const r = room(name);
  // A message with an offset goes before the first later one (history that
  // arrives after live messages); everything else at the end.
  let at = r.messages.length;
  if (li.dataset.offset) {
    const off = BigInt(li.dataset.offset);
    const later = r.messages.findIndex((m) => m.dataset.offset && BigInt(m.dataset.offset) > off);
    if (later >= 0) at = later;
  }
  const before = r.messages[at];
  r.messages.splice(at, 0, li);
  if (r.messages.length > 500) r.messages.shift().remove();
  if (name === state.current) {
    const atBottom = isAtBottom();
    if (before && before.parentNode === $("messages")) $("messages").insertBefore(li, before);
    else $("messages").append(li);
    scrollDown(atBottom);
  } else if (li.classList.contains("msg")) {
    r.unread++;
    renderRoomLists();
  }
}

function systemLine(name, text) {
  addItem(name, el("li", "system", text));
}

function isAtBottom() {
  const m = $("messages");
  return m.scrollHeight - m.scrollTop - m.clientHeight < 80;
}
function scrollDown(force) {
  const m = $("messages");
  if (force) m.scrollTop = m.scrollHeight;
}

async function sendMessage(text, li) {
  const name = state.current;
  if (!li) {
    li = messageItem({ username: state.username, userId: state.userId, message: text, replica: state.replica, mine: true });
    addItem(name, li);
    scrollDown(true);
  }
  li.classList.remove("failed");
  li.classList.add("pending");
  li.querySelector(".status")?.remove();
  li.querySelector(".retry")?.remove();
  const status = el("span", "status", "sending…");
  li.querySelector(".meta").append(status);

  const res = state.loggedIn
    ? await request("new message", { room: name, message: text })
    : { ok: false, error: { code: "OFFLINE", message: "Not connected" } };
  li.classList.remove("pending");
  if (res.ok) {
    li.classList.add("acked");
    li.dataset.id = res.id;
    room(name).seen.add(res.id);
    status.textContent = "✓";
    status.title = `stored as ${res.id}`;
    const time = li.querySelector("time");
    time.textContent = fmtTime(res.ts);
    time.dateTime = new Date(res.ts).toISOString();
    paintBadge(li.querySelector(".replica-badge"), res.replica);
    setReplica(res.replica);
    return;
  }
  li.classList.add("failed");
  status.textContent = `not sent: ${errorText(res.error)}`;
  const retry = el("button", "retry", "Retry");
  retry.type = "button";
  retry.addEventListener("click", () => sendMessage(text, li));
  li.querySelector(".meta").append(retry);
}

// ---------- socket ----------

// Token mode (a server with --auth jwt): open the page as .../#token=<JWT>.
// The fragment never reaches a server or its logs; the token is kept for
// this tab and sent in the CONNECT auth. The name then comes from the token.
const TOKEN = (() => {
  const m = /(?:^#|&)token=([^&]+)/.exec(location.hash);
  if (m) {
    sessionStorage.setItem("chat-token", decodeURIComponent(m[1]));
    history.replaceState(null, "", location.pathname + location.search);
  }
  return sessionStorage.getItem("chat-token") || "";
})();

// Relative to the page, so the app also works behind a path prefix.
const socket = io({
  path: new URL("socket.io/", location.href).pathname,
  autoConnect: false,
  ...(TOKEN ? { auth: { token: TOKEN } } : {}),
});
// Reachable from the devtools console (and the browser test) for debugging.
window.__chatSocket = socket;

// Emit with an ack and a timeout; always resolves with a protocol-shaped reply.
function request(event, ...args) {
  return new Promise((resolve) => {
    socket.timeout(ACK_TIMEOUT_MS).emit(event, ...args, (err, res) => {
      if (err) resolve({ ok: false, error: { code: "TIMEOUT", message: "No answer from the server" } });
      else if (!res || typeof res !== "object") resolve({ ok: false, error: { code: "BAD_REPLY", message: "Bad reply" } });
      else resolve(res);
    });
  });
}

function setConn(stateName, label) {
  for (const id of ["conn-state", "login-conn"]) {
    const c = $(id);
    c.dataset.state = stateName;
    c.textContent = label || stateName;
  }
  const transport = socket.io.engine?.transport?.name || "";
  $("conn-transport").textContent = socket.connected ? transport : "";
  document.body.dataset.conn = stateName;
}

function setReplica(id) {
  if (!id) return;
  state.replica = id;
  paintBadge($("my-replica"), id);
}

// Log in (again, after a reconnect) and put the user back into every room.
async function login() {
  const res = await request("add user", state.username);
  if (!res.ok) {
    state.loggedIn = false;
    // A refused first login asks for another name; after a reconnect keep trying.
    // (A TIMEOUT means the connection dropped: the next connect retries.)
    if (!state.userId && res.error?.code !== "TIMEOUT") state.username = "";
    if (!$("app").hidden) toast(`Login failed: ${errorText(res.error)}`);
    $("login-error").textContent = errorText(res.error);
    $("login-error").hidden = false;
    $("login").hidden = false;
    $("app").hidden = true;
    $("login-submit").disabled = false;
    return;
  }
  const first = !state.userId;
  state.loggedIn = true;
  state.username = res.username;
  state.userId = res.userId;
  state.numUsers = res.numUsers;
  setReplica(res.replica);
  $("me").textContent = res.username;
  $("num-users").textContent = `(${res.numUsers} users)`;
  $("login").hidden = true;
  $("app").hidden = false;
  $("login-error").hidden = true;

  // `add user` put us in the default room; undo that if the user had left it.
  if (!wanted.includes(DEFAULT_ROOM)) await request("leave room", DEFAULT_ROOM);
  else showHistory(DEFAULT_ROOM, res.history);
  for (const name of wanted) {
    if (name === DEFAULT_ROOM) {
      await refreshUsers(name);
      continue;
    }
    const j = await request("join room", name);
    if (j.ok) {
      setUsers(j.room, j.users);
      showHistory(j.room, j.history);
    }
    else systemLine(name, `Could not rejoin: ${errorText(j.error)}`);
  }
  if (first) {
    systemLine(DEFAULT_ROOM, `Welcome, ${res.username}! ${res.numUsers === 1 ? "You are the only one here." : `${res.numUsers} users online.`}`);
    switchRoom(DEFAULT_ROOM);
  } else {
    // Recovered (connection state recovery): the server sent what was missed.
    systemLine(
      state.current,
      socket.recovered
        ? `Reconnected to ${res.replica}: nothing missed.`
        : `Reconnected to ${res.replica}; the latest messages are shown above.`,
    );
    renderUsers();
  }
  refreshRooms();
  refreshCluster();
}

socket.on("connect", () => {
  setConn("connected");
  if (state.username) login();
});
socket.io.on("reconnect_attempt", () => setConn("reconnecting"));
socket.on("connect_error", (err) => {
  setConn(socket.active ? "reconnecting" : "disconnected");
  // A refused token (CONNECT_ERROR with a code) says why on the login card.
  if (err?.data?.code) {
    $("login-error").textContent = `${err.data.code}: ${err.message}`;
    $("login-error").hidden = false;
  }
});
socket.on("disconnect", (reason) => {
  state.loggedIn = false;
  typingRoom = "";
  for (const r of state.rooms.values()) {
    for (const t of r.typing.values()) clearTimeout(t.timer);
    r.typing.clear();
  }
  renderTyping();
  setConn(socket.active ? "reconnecting" : "disconnected", socket.active ? "reconnecting" : `disconnected (${reason})`);
  if (state.userId && socket.active) systemLine(state.current, "Connection lost, reconnecting…");
});

socket.on("login", (data) => {
  state.numUsers = data.numUsers;
  $("num-users").textContent = `(${data.numUsers} users)`;
});

// A message, live or from history, shown once.
function showMessage(name, data) {
  const r = room(name);
  if (data.id && r.seen.has(data.id)) return;
  if (data.id) r.seen.add(data.id);
  addItem(name, messageItem({ ...data, mine: data.userId === state.userId }));
}

// The room's last messages, from a `join room` or `add user` reply: on the
// first join the room's history, after a reconnect what came while away.
function showHistory(name, history) {
  if (!Array.isArray(history)) return;
  for (const m of history) showMessage(name, m);
}

socket.on("new message", (data) => {
  const name = data.room || DEFAULT_ROOM;
  if (!state.rooms.has(name)) return;
  setTyping(data, false);
  showMessage(name, data);
});

socket.on("user joined", (data) => {
  const name = data.room || DEFAULT_ROOM;
  state.numUsers = data.numUsers;
  $("num-users").textContent = `(${data.numUsers} users)`;
  if (!state.rooms.has(name)) return;
  room(name).users.set(data.userId, { userId: data.userId, username: data.username, replica: data.replica });
  systemLine(name, `${data.username} joined`);
  if (name === state.current) renderUsers();
});

socket.on("user left", (data) => {
  const name = data.room || DEFAULT_ROOM;
  state.numUsers = data.numUsers;
  $("num-users").textContent = `(${data.numUsers} users)`;
  if (!state.rooms.has(name)) return;
  room(name).users.delete(data.userId);
  setTyping(data, false);
  systemLine(name, `${data.username} left`);
  if (name === state.current) renderUsers();
});

socket.on("typing", (data) => setTyping(data, true));
socket.on("stop typing", (data) => setTyping(data, false));
socket.on("chat error", (err) => toast(`${err.event ? err.event + ": " : ""}${errorText(err)}`));

// The transport changes from polling to websocket after the upgrade.
socket.io.on("open", () => {
  socket.io.engine.on("upgrade", () => setConn(socket.connected ? "connected" : "connecting"));
});

// ---------- cluster view ----------

async function refreshCluster() {
  if (!state.loggedIn) return;
  const res = await request("cluster info");
  if (!res.ok) return;
  if (typeof res.numUsers === "number") $("num-users").textContent = `(${res.numUsers} users)`;
  const list = $("cluster");
  list.replaceChildren();
  const replicas = [...res.replicas].sort((a, b) => String(a.id).localeCompare(String(b.id)));
  for (const r of replicas) {
    const li = el("li", r.id === state.replica ? "mine" : "");
    li.append(replicaBadge(r.id));
    li.append(el("span", "users", `${r.users} ${r.users === 1 ? "user" : "users"}`));
    li.append(el("span", "muted small", `${r.connections} conn`));
    if (r.id === state.replica) li.append(el("span", "you", "you"));
    list.append(li);
  }
}

setInterval(() => {
  if (document.hidden) return;
  refreshCluster();
  refreshRooms();
}, POLL_MS);

// ---------- UI wiring ----------

$("login-form").addEventListener("submit", (e) => {
  e.preventDefault();
  const name = $("login-name").value.trim() || (TOKEN ? "token" : "");
  if (!name) return;
  state.username = name;
  $("login-submit").disabled = true;
  $("login-error").hidden = true;
  if (socket.connected) login();
  else socket.connect();
});

$("composer").addEventListener("submit", (e) => {
  e.preventDefault();
  const input = $("message-input");
  const text = input.value;
  if (!text.trim()) return;
  if (!wanted.includes(state.current)) return toast("Join a room first.");
  input.value = "";
  stopTyping();
  sendMessage(text);
});
$("message-input").addEventListener("input", onInput);

$("join-form").addEventListener("submit", (e) => {
  e.preventDefault();
  const input = $("join-name");
  const name = input.value;
  input.value = "";
  joinRoom(name);
});

$("leave-room").addEventListener("click", () => {
  if (wanted.includes(state.current)) leaveRoom(state.current);
});
$("toggle-rooms").addEventListener("click", () => document.body.classList.toggle("show-rooms"));
$("toggle-people").addEventListener("click", () => document.body.classList.toggle("show-people"));
// On narrow screens the sidebars are drawers over the chat; a tap on the chat closes them.
document.querySelector(".chat").addEventListener("click", () => document.body.classList.remove("show-rooms", "show-people"));

if (TOKEN) {
  $("login-name").required = false;
  $("login-name").placeholder = "Your name comes from your token";
}
// Connect up front so the login screen can show the connection state.
setConn("connecting");
socket.connect();
