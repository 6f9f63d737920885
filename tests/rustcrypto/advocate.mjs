// An advocate on matrix-js-sdk with Rust crypto, set up the way Element sets itself up today:
// password login (new device), in-memory Rust crypto, cross-signing bootstrapped at sign-in (the
// own device ends up signed by its owner), and Element's device isolation mode (only devices
// cross-signed by their owner get room keys, and their events are the only ones that decrypt).
//
// Driven by the Python tests (tests/rustcrypto_client.py): one JSON object a line on stdin
// ({"id": .., "cmd": .., ...}), one JSON object a line on stdout: answers {"id": .., "ok": true, ...}
// or {"id": .., "ok": false, "error": ".."}, and events {"event": "message"|"invite"|"joined", ...}.
// Logs go to stderr. The process ends when stdin closes.

// matrix-js-sdk 43 targets Node 22; Node 20 (the machines' Node) lacks Promise.withResolvers
// (ES2024), without which the SDK's outgoing crypto requests silently never go out and cross-signing
// never completes. It is the one thing missing.
if (typeof Promise.withResolvers !== "function") {
    Promise.withResolvers = function withResolvers() {
        let resolve, reject;
        const promise = new this((res, rej) => {
            resolve = res;
            reject = rej;
        });
        return { promise, resolve, reject };
    };
}

// stdout carries the protocol only: every console method writes to stderr. This must happen
// before the SDK is loaded (its logger binds console methods when it is created).
for (const name of ["log", "info", "debug", "trace", "warn"]) {
    console[name] = console.error.bind(console);
}

import readline from "node:readline";

const sdk = await import("matrix-js-sdk");
const { logger } = await import("matrix-js-sdk/lib/logger.js");
const { EventShieldColour, EventShieldReason, OnlySignedDevicesIsolationMode, AllDevicesIsolationMode } =
    await import("matrix-js-sdk/lib/crypto-api/index.js");

// The SDK's main logger; its prefixed child loggers keep their own (debug) level. All on stderr.
logger.setLevel(process.env.ADVOCATE_LOG_LEVEL || "warn", false);

function emit(object) {
    process.stdout.write(JSON.stringify(object) + "\n");
}

function log(...args) {
    console.error("[advocate]", ...args);
}

const state = {
    client: null,
    /** event id → the last line emitted for it (JSON), so a changed outcome is emitted again. */
    emitted: new Map(),
    /** event id → its pending report: reports of one event run in order, the newest state last. */
    reports: new Map(),
};

function roomOf(event) {
    return event.getRoomId() || null;
}

async function senderDevice(client, event) {
    const wire = event.getWireContent();
    if (wire && typeof wire.device_id === "string") return wire.device_id;
    const key = event.getSenderKey && event.getSenderKey();
    if (!key || !event.getSender()) return null;
    try {
        const devices = await client.getCrypto().getUserDeviceInfo([event.getSender()]);
        for (const device of (devices.get(event.getSender()) || new Map()).values()) {
            if (device.getIdentityKey() === key) return device.deviceId;
        }
    } catch (err) {
        log("device lookup failed:", String(err));
    }
    return null;
}

async function shieldOf(client, event) {
    if (!event.isEncrypted() || event.isDecryptionFailure()) return null;
    try {
        const info = await client.getCrypto().getEncryptionInfoForEvent(event);
        if (!info) return null;
        return {
            color: EventShieldColour[info.shieldColour].toLowerCase(),
            reason: info.shieldReason === null ? null : EventShieldReason[info.shieldReason],
        };
    } catch (err) {
        log("shield lookup failed:", String(err));
        return null;
    }
}

async function report(event) {
    const client = state.client;
    const roomId = roomOf(event);
    if (!client || !roomId || event.isState()) return;
    if (event.isEncrypted() && (event.isBeingDecrypted() || event.shouldAttemptDecryption())) {
        return; // its Event.decrypted comes later and reports it
    }
    const content = event.getContent() || {};
    const failure = event.isDecryptionFailure() ? (event.decryptionFailureReason || "UNKNOWN_ERROR") : null;
    const line = {
        event: "message",
        room_id: roomId,
        event_id: event.getId(),
        sender: event.getSender(),
        sender_device: await senderDevice(client, event),
        type: event.getType(),
        msgtype: failure ? null : (content.msgtype ?? null),
        body: failure ? null : (typeof content.body === "string" ? content.body : null),
        encrypted: event.isEncrypted(),
        decryption_failure: failure,
        shield: await shieldOf(client, event),
        ts: event.getTs(),
    };
    const text = JSON.stringify(line);
    if (state.emitted.get(line.event_id) === text) return;
    state.emitted.set(line.event_id, text);
    emit(line);
}

function reportSoon(event) {
    const id = event.getId();
    const next = (state.reports.get(id) || Promise.resolve())
        .then(() => report(event))
        .catch((err) => log("report failed:", String(err)));
    state.reports.set(id, next);
    next.then(() => {
        if (state.reports.get(id) === next) state.reports.delete(id);
    });
}

async function login({ homeserver, user_id, password, mode = "signed", device_name = "rust-crypto test advocate" }) {
    if (state.client) throw new Error("already logged in");
    if (!["signed", "all"].includes(mode)) throw new Error(`mode must be "signed" or "all", not ${mode}`);
    const bare = sdk.createClient({ baseUrl: homeserver });
    const response = await bare.loginRequest({
        type: "m.login.password",
        identifier: { type: "m.id.user", user: user_id },
        password,
        initial_device_display_name: device_name,
    });
    bare.stopClient();
    const client = sdk.createClient({
        baseUrl: homeserver,
        userId: response.user_id,
        deviceId: response.device_id,
        accessToken: response.access_token,
    });
    state.client = client;
    await client.initRustCrypto({ useIndexedDB: false });
    const crypto = client.getCrypto();
    // As Element at sign-in: create the account's cross-signing keys (password UIA) and sign the
    // own device with them.
    await crypto.bootstrapCrossSigning({
        authUploadDeviceSigningKeys: async (makeRequest) => {
            await makeRequest({
                type: "m.login.password",
                identifier: { type: "m.id.user", user: response.user_id },
                password,
            });
        },
    });
    crypto.setDeviceIsolationMode(
        mode === "signed" ? new OnlySignedDevicesIsolationMode() : new AllDevicesIsolationMode(false),
    );

    client.on(sdk.RoomEvent.MyMembership, (room, membership, previous) => {
        if (membership === "invite" && previous !== "invite") {
            emit({ event: "invite", room_id: room.roomId });
            client.joinRoom(room.roomId).catch((err) => log("auto-join failed:", String(err)));
        } else if (membership === "join" && previous !== "join") {
            emit({ event: "joined", room_id: room.roomId });
        }
    });
    client.on(sdk.RoomEvent.Timeline, (event) => reportSoon(event));
    // A retry that succeeds (a room key that came late) or fails differently is reported again.
    client.on(sdk.MatrixEventEvent.Decrypted, (event) => reportSoon(event));

    const prepared = new Promise((resolve, reject) => {
        const onSync = (syncState) => {
            if (syncState === "PREPARED" || syncState === "SYNCING") {
                client.off(sdk.ClientEvent.Sync, onSync);
                resolve();
            } else if (syncState === "ERROR") {
                client.off(sdk.ClientEvent.Sync, onSync);
                reject(new Error("first sync failed"));
            }
        };
        client.on(sdk.ClientEvent.Sync, onSync);
    });
    await client.startClient({ initialSyncLimit: 20, lazyLoadMembers: false });
    await prepared;
    // The device's signature by the new self-signing key shows up in the local store once the
    // own keys are queried again (the sync does it); wait for it so that "logged in" means "cross-signed".
    for (let tries = 0; ; tries++) {
        const own = await crypto.getDeviceVerificationStatus(response.user_id, response.device_id);
        if (own && own.signedByOwner) break;
        if (tries >= 300) throw new Error("own device is not cross-signed after bootstrap");
        await new Promise((resolve) => setTimeout(resolve, 100));
    }
    return await status();
}

function needClient() {
    if (!state.client) throw new Error("not logged in");
    return state.client;
}

async function status() {
    const client = needClient();
    const crypto = client.getCrypto();
    const own = await crypto.getDeviceVerificationStatus(client.getUserId(), client.getDeviceId());
    const crossSigning = await crypto.getCrossSigningStatus();
    return {
        user_id: client.getUserId(),
        device_id: client.getDeviceId(),
        cross_signing_ready: await crypto.isCrossSigningReady(),
        cross_signing: crossSigning,
        own_device: own && {
            signedByOwner: own.signedByOwner,
            crossSigningVerified: own.crossSigningVerified,
            localVerified: own.localVerified,
        },
    };
}

async function waitForRoom(client, roomId, timeoutMs = 20000) {
    const deadline = Date.now() + timeoutMs;
    for (;;) {
        const room = client.getRoom(roomId);
        if (room && room.getMyMembership() === "join") return room;
        if (Date.now() > deadline) throw new Error(`not joined to ${roomId}`);
        await new Promise((resolve) => setTimeout(resolve, 50));
    }
}

async function join({ room_id }) {
    const client = needClient();
    await client.joinRoom(room_id);
    await waitForRoom(client, room_id);
    return { room_id };
}

async function send({ room_id, body, msgtype = "m.text" }) {
    const client = needClient();
    await waitForRoom(client, room_id);
    const response = await client.sendMessage(room_id, { msgtype, body });
    return { event_id: response.event_id };
}

async function importRoomKeys({ keys }) {
    // As Element's "Import E2E room keys" (the decrypted export: a list of megolm sessions).
    const client = needClient();
    await client.getCrypto().importRoomKeys(keys);
    return { imported: keys.length };
}

async function members({ room_id }) {
    const client = needClient();
    const room = client.getRoom(room_id);
    if (!room) return { joined: [], invited: [] };
    return {
        joined: room.getMembersWithMembership("join").map((m) => m.userId),
        invited: room.getMembersWithMembership("invite").map((m) => m.userId),
    };
}

async function deviceInfo({ user_id }) {
    const client = needClient();
    const crypto = client.getCrypto();
    const map = await crypto.getUserDeviceInfo([user_id], true);
    const devices = [];
    for (const device of (map.get(user_id) || new Map()).values()) {
        const status = await crypto.getDeviceVerificationStatus(user_id, device.deviceId);
        devices.push({
            device_id: device.deviceId,
            signedByOwner: status ? status.signedByOwner : false,
            crossSigningVerified: status ? status.crossSigningVerified : false,
            localVerified: status ? status.localVerified : false,
            verified: status ? status.isVerified() : false,
        });
    }
    const user = await crypto.getUserVerificationStatus(user_id);
    return {
        user_id,
        devices,
        user: { known: user.known, crossSigningVerified: user.isCrossSigningVerified(),
                needsUserApproval: user.needsUserApproval },
    };
}

async function cached({ room_id }) {
    // What this client keeps of a room in memory (its sync accumulator and timelines): the
    // bodies it could still show. Redacted events have none.
    const client = needClient();
    const room = client.getRoom(room_id);
    if (!room) return { known: false, membership: null, events: [] };
    const events = [];
    for (const timeline of room.getUnfilteredTimelineSet().getTimelines()) {
        for (const event of timeline.getEvents()) {
            const content = event.getContent() || {};
            events.push({
                event_id: event.getId(),
                type: event.getType(),
                body: typeof content.body === "string" ? content.body : null,
                redacted: event.isRedacted(),
            });
        }
    }
    return { known: true, membership: room.getMyMembership(), events };
}

async function stop() {
    if (state.client) state.client.stopClient();
    return {};
}

const commands = {
    login, join, send, status, members, cached, device_info: deviceInfo, import_room_keys: importRoomKeys, stop,
};

const input = readline.createInterface({ input: process.stdin, terminal: false });
input.on("line", (text) => {
    if (!text.trim()) return;
    let request;
    try {
        request = JSON.parse(text);
    } catch {
        emit({ id: null, ok: false, error: "not JSON" });
        return;
    }
    const handler = commands[request.cmd];
    // Commands run concurrently (a slow send does not hold up status), answers carry the id.
    (async () => {
        if (!handler) throw new Error(`unknown command ${request.cmd}`);
        return await handler(request);
    })().then(
        (result) => emit({ id: request.id, ok: true, ...result }),
        (err) => emit({ id: request.id, ok: false, error: err && err.message ? err.message : String(err) }),
    );
});
input.on("close", () => {
    if (state.client) state.client.stopClient();
    // The SDK keeps timers (sync, outgoing requests); leave promptly once the driver is gone.
    setTimeout(() => process.exit(0), 200);
});

log("ready");
