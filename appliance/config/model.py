"""The store configuration (store.toml): what the shop sells, where its sensors are, how it runs.

The first sections (store, floor, products, sensors, stock, cameras, issuers) are the contract of
shared/spec/recording.md; the rest are the appliance's own documented extensions, each optional
with a safe default.
"""

from __future__ import annotations

import urllib.parse
from dataclasses import dataclass

from appliance.config.schema import many, named, section, setting

Point2 = tuple[float, float]
Point3 = tuple[float, float, float]


@dataclass(frozen=True, slots=True, kw_only=True)
class StoreInfo:
    name: str = setting(help="the shop's name, shown on receipts and the owner page")
    currency: str = setting(help="ISO 4217 currency code, e.g. KRW")
    timezone: str = setting(help="IANA time zone, e.g. Asia/Seoul")
    id: str = setting("shop", help="the shop's id in MQTT topics (shop/<id>/...)")


@dataclass(frozen=True, slots=True, kw_only=True)
class Floor:
    size: Point2 = setting(help="floor extent in x and y, metres; origin at one corner", unit="m")
    entry: tuple[Point2, Point2] = setting(help="entry line segment; crossing it inward = entering")
    exit: tuple[Point2, Point2] = setting(help="exit line segment; may be the same as entry")


@dataclass(frozen=True, slots=True, kw_only=True)
class Product:
    sku: str = setting(help="unique product code (barcode)")
    name: str = setting("", help="name printed on the receipt")
    price: int = setting(help="price in minor units, per unit or per kg when by_weight", min=0)
    unit_g: float | None = setting(None, help="mean weight of one unit, grams", min=0.001, unit="g")
    unit_sd_g: float | None = setting(
        None, help="standard deviation of one unit's weight; default 1% of unit_g, at least 0.5 g", min=0.0
    )
    by_weight: bool = setting(False, help="loose goods charged by weight; price is per kg")

    def __post_init__(self) -> None:
        if not self.sku:
            raise ValueError("sku must not be empty")
        if not self.by_weight and self.unit_g is None:
            raise ValueError(f"product {self.sku!r}: unit_g is required unless by_weight = true")

    @property
    def unit_spread_g(self) -> float:
        if self.unit_sd_g is not None:
            return self.unit_sd_g
        return max(0.5, 0.01 * (self.unit_g or 0.0))


@dataclass(frozen=True, slots=True, kw_only=True)
class Sensor:
    id: str = setting(help="unique load-cell id; also its MQTT sensor id")
    pos: Point3 = setting(help="centre of the plate: x, y on the floor, z height", unit="m")
    facing: Point2 = setting(help="unit floor vector from the shelf into the aisle")
    width: float = setting(0.1016, help="plate width along the shelf", min=0.01, max=3.0, unit="m")
    tare_g: float | None = setting(
        None, help="reading of the empty plate; enables inventory from absolute weight", unit="g"
    )
    rate_hz: float | None = setting(
        None, help="nominal reporting rate of the load cell; lets the box tell dropped samples from a quiet "
        "sensor", min=1.0, max=1000.0, unit="Hz",
    )


@dataclass(frozen=True, slots=True, kw_only=True)
class Stock:
    sku: str = setting(help="the product stocked here")
    sensors: tuple[str, ...] = setting(help="the plates it stands on (a product may span plates)")
    low: int = setting(2, help="units at or below which a low-stock signal is raised", min=0)
    at: Point2 | None = setting(
        None, help="floor x, y of the middle of the product's facings; where products share a plate, the "
        "hand's place along the shelf tells which one was taken", unit="m",
    )


@dataclass(frozen=True, slots=True, kw_only=True)
class Camera:
    id: str = setting(help="unique camera id")
    size: tuple[int, int] = setting(help="image width and height in pixels")
    image_to_floor: tuple[Point3, Point3, Point3] = setting(
        help="3x3 homography from a floor pixel (u, v, 1) to floor (x, y, w)"
    )
    source: str = setting("", help="what to open live: rtsp:// URL, /dev/videoN or a file path")


@dataclass(frozen=True, slots=True, kw_only=True)
class Issuer:
    public_key: str = setting(help="base64url of the issuer's 32-byte Ed25519 public key")


@dataclass(frozen=True, slots=True, kw_only=True)
class ShelfSettings:
    settle_s: float = setting(
        1.0, help="how long a plate must hold still before a change counts; longer rejects more "
        "hand noise but delays the event", min=0.1, max=5.0, unit="s",
    )
    min_step_g: float = setting(
        4.0, help="smallest settled change treated as an event", min=0.5, max=1000.0, unit="g"
    )
    busy_sigma: float = setting(
        6.0, help="a reading this many noise sigmas off the stable level marks the plate busy", min=2.0, max=50.0
    )
    max_busy_s: float = setting(
        120.0, help="a plate busy longer than this is re-levelled and the time sent to review", min=5.0,
        max=3600.0, unit="s",
    )
    silent_s: float = setting(
        10.0, help="a sensor silent this long is reported lost (once) until it returns", min=1.0, max=3600.0,
        unit="s",
    )


@dataclass(frozen=True, slots=True, kw_only=True)
class FusionSettings:
    reach_m: float = setting(
        1.1, help="farthest a body centre can be from a plate and still take from it", min=0.2, max=3.0, unit="m"
    )
    stand_depth_m: float = setting(
        0.62, help="usual distance from a plate's centre into the aisle where a shopper taking from it stands",
        min=0.1, max=2.0, unit="m",
    )
    stand_depth_slack_m: float = setting(
        0.15, help="depth within this of the usual one counts as fully in position", min=0.0, max=1.0, unit="m"
    )
    depth_sd_m: float = setting(
        0.08, help="spread of standing depth beyond the slack; larger forgives odd postures but tells "
        "people apart less well", min=0.02, max=2.0, unit="m",
    )
    along_sd_m: float = setting(
        0.12, help="spread of where most takers stand along the shelf from the plate; larger tells neighbours "
        "apart less well", min=0.02, max=2.0, unit="m",
    )
    along_tail_sd_m: float = setting(
        0.40, help="spread for takers who stand aside and reach sideways (someone else is in front)", min=0.05,
        max=3.0, unit="m",
    )
    along_tail_share: float = setting(
        0.15, help="share of takers who stand aside", min=0.0, max=1.0,
    )
    hand_sd_m: float = setting(
        0.04, help="typical error of a hand point the tracker reports; smaller trusts the hand's place along "
        "the shelf more when products share a plate", min=0.005, max=0.5, unit="m",
    )
    min_confidence: float = setting(
        0.8, help="lines less certain than this go to the review queue instead of the charge", min=0.0,
        max=1.0,
    )
    resolve_lag_s: float = setting(
        0.5, help="how long after a shelf event settles the box waits for track data before deciding",
        min=0.0, max=30.0, unit="s",
    )


@dataclass(frozen=True, slots=True, kw_only=True)
class GateSettings:
    bind_window_s: float = setting(
        20.0, help="how long after a pass is accepted the next people through belong to it", min=1.0,
        max=300.0, unit="s",
    )
    review_wait_s: float = setting(
        600.0, help="how long a visit's charge waits for the review queue before leaving uncertain lines "
        "out", min=0.0, max=86400.0, unit="s",
    )
    gone_unseen_s: float = setting(
        900.0, help="a shopper the floor has not seen for this long is taken to have left, so their visit "
        "closes and is charged even when no exit was matched to them; keep it longer than the tracker keeps "
        "a hidden person ([vision] keep_inside_s)", min=60.0, max=86400.0, unit="s",
    )


@dataclass(frozen=True, slots=True, kw_only=True)
class MqttSettings:
    host: str = setting("127.0.0.1", help="broker address (the box's own Mosquitto by default)")
    port: int = setting(1883, help="broker port", min=1, max=65535)
    username: str = setting("appliance", help="the appliance's broker user")
    password_file: str = setting("", help="file holding the broker password (never the password itself)")


@dataclass(frozen=True, slots=True, kw_only=True)
class PaymentSettings:
    processor: str = setting(
        "sandbox", help="stripe: charge the processor at api_base; sandbox: the box runs its own sandbox processor "
        "on api_base's loopback port and charges it through the same Stripe adapter", choices=("stripe", "sandbox"),
    )
    api_base: str = setting(
        "http://127.0.0.1:12111", help="the processor's API base URL: https://api.stripe.com in production; plain "
        "http only on loopback"
    )
    secret_key_file: str = setting(
        "", help="file holding the processor secret key (sk_...); never the key itself. Empty: sandbox only"
    )
    connect_timeout_s: float = setting(
        3.0, help="how long to wait for a connection to the processor", min=0.1, max=60.0, unit="s"
    )
    read_timeout_s: float = setting(
        10.0, help="how long to wait for an answer; a timed-out charge is retried with the same key", min=0.5,
        max=120.0, unit="s",
    )
    retry_first_s: float = setting(
        1.0, help="longest wait before the first retry (each retry may wait up to twice as long, with jitter)",
        min=0.05, max=60.0, unit="s",
    )
    retry_max_s: float = setting(
        300.0, help="longest wait between two retries of one charge", min=1.0, max=3600.0, unit="s"
    )
    lookup_after_h: float = setting(
        23.0, help="a charge first sent this long ago is looked up by order reference before it is re-sent "
        "(processors forget idempotency keys after 24 h)", min=1.0, max=23.5, unit="h",
    )

    def __post_init__(self) -> None:
        parts = urllib.parse.urlsplit(self.api_base)
        if parts.scheme not in ("http", "https") or not parts.hostname or parts.path not in ("", "/"):
            raise ValueError(f"api_base must be a base URL such as https://api.stripe.com, got {self.api_base!r}")
        loopback = parts.hostname in ("127.0.0.1", "localhost", "::1")
        if parts.scheme == "http" and not loopback:
            raise ValueError(f"api_base: plain http is allowed only on loopback; use https for {parts.hostname}")
        if self.processor == "sandbox" and not loopback:
            raise ValueError("api_base: the sandbox processor runs on this box; use a loopback address")
        if self.processor == "stripe" and not self.secret_key_file:
            raise ValueError("secret_key_file is required with processor = \"stripe\"")
        if self.retry_max_s < self.retry_first_s:
            raise ValueError("retry_max_s must be at least retry_first_s")


@dataclass(frozen=True, slots=True, kw_only=True)
class VaultSettings:
    folder: str = setting(
        "/var/lib/walkout/vault", help="the vault's data folder (made with mode 0700); relative paths are taken "
        "from the store.toml's folder"
    )
    credential: str = setting(
        "vault-master-key", help="name of the systemd credential (LoadCredentialEncrypted=) holding the master key"
    )
    key_file: str = setting(
        "", help="development only: a file holding the master key, readable by its owner only (appliance vault "
        "init makes one); never the key itself"
    )
    token_days: int = setting(
        7, help="longest a payment token is kept when its charge never becomes final (policy: 1-7 days)", min=1,
        max=7, unit="d",
    )
    evidence_days: int = setting(
        30, help="how long cart lines with their evidence and review items are kept: the dispute window "
        "(policy: 14-120 days)", min=14, max=120, unit="d",
    )
    sales_years: int = setting(
        5, help="how long visits, charges, receipts and refunds are kept for tax records (policy: 5-10 years)",
        min=5, max=10, unit="y",
    )
    audit_years: int = setting(
        5, help="how long audit entries keep their content; their hashes stay (policy: 1-10 years)", min=1,
        max=10, unit="y",
    )
    pass_hours: int = setting(
        1, help="how long the keyed hash of an admitted pass is kept so a restarted box still refuses it "
        "(policy: 1-24 hours; a pass lives at most ten minutes)", min=1, max=24, unit="h",
    )
    retention_interval_min: float = setting(
        60.0, help="how often the retention engine runs (it also runs at start); shorter deletes closer to the "
        "limit", min=1.0, max=1440.0, unit="min",
    )
    chunk_rows: int = setting(
        5000, help="rows deleted per transaction by a retention run; smaller holds writers up less", min=100,
        max=100000,
    )


@dataclass(frozen=True, slots=True, kw_only=True)
class VisionSettings:
    model: str = setting("yolox_nano", help="person detector, by its name in models/manifest.toml")
    input_size: tuple[int, int] = setting(
        (640, 384), help="detector input width and height in pixels (multiples of 32); 640x384 suits 16:9 "
        "cameras, 416x416 is faster on 4:3 ones",
    )
    threads: int = setting(1, help="CPU threads per detector; one per worker process uses cores best", min=1, max=64)
    score_min: float = setting(
        0.1, help="weakest box kept; boxes between this and score_high only extend existing tracks", min=0.01,
        max=0.99,
    )
    score_high: float = setting(
        0.5, help="boxes at least this sure are matched first and may start a track; higher rejects more "
        "false people but starts real ones later", min=0.05, max=0.99,
    )
    nms_iou: float = setting(0.45, help="overlap above which two boxes are taken for one person", min=0.1, max=0.9)
    motion_gate: bool = setting(True, help="skip the detector on a camera whose picture has not changed")
    motion_delta: int = setting(
        18, help="grey-level change that counts a pixel as changed; above the camera's noise", min=1, max=255
    )
    motion_share: float = setting(
        0.001, help="share of changed pixels that counts the picture as changed", min=0.0, max=1.0
    )
    motion_refresh_s: float = setting(
        2.0, help="run the detector at least this often even on a still picture", min=0.1, max=600.0, unit="s"
    )
    workers: int = setting(0, help="camera worker processes; 0 = one per CPU core", min=0, max=256)
    groups: tuple[tuple[str, ...], ...] = setting(
        (), help="camera ids per worker process, e.g. [[\"cam1\", \"cam2\"], [\"cam3\"]]; empty = spread evenly"
    )
    gate_m: float = setting(
        1.0, help="farthest a sighting can be from where a track is expected and still continue it", min=0.2,
        max=5.0, unit="m",
    )
    fuse_m: float = setting(
        0.7, help="sightings from different cameras closer than this are one person", min=0.1, max=3.0, unit="m"
    )
    entry_m: float = setting(
        1.2, help="distance from the entry line within which new people are expected to appear", min=0.2,
        max=5.0, unit="m",
    )
    exit_m: float = setting(
        1.2, help="a track lost this close to the exit line has left the shop", min=0.2, max=5.0, unit="m"
    )
    confirm_hits: int = setting(
        3, help="sightings that confirm a track starting at the entry (three times that elsewhere)", min=1,
        max=50,
    )
    keep_inside_s: float = setting(
        600.0, help="how long a person lost inside the shop (occluded) keeps their track", min=1.0,
        max=7200.0, unit="s",
    )
    forget_at_exit_s: float = setting(
        1.0, help="how long a track lost at the exit or off the floor is kept before it ends", min=0.0,
        max=60.0, unit="s",
    )
    walk_speed_mps: float = setting(
        1.5, help="fastest plausible walking speed; bounds where a lost person can be found again", min=0.3,
        max=5.0, unit="m/s",
    )

    def __post_init__(self) -> None:
        w, h = self.input_size
        if w <= 0 or h <= 0 or w % 32 or h % 32:
            raise ValueError(f"input_size must be positive multiples of 32, got {list(self.input_size)}")
        if self.score_high < self.score_min:
            raise ValueError(f"score_high {self.score_high} is below score_min {self.score_min}")


@dataclass(frozen=True, slots=True, kw_only=True)
class StoreConfig:
    """A whole store.toml."""

    version: int = setting(help="configuration format version; must be 1", min=1, max=1)
    store: StoreInfo = setting(help="the shop")
    floor: Floor = setting(help="the floor plan")
    products: tuple[Product, ...] = many("what the shop sells")
    sensors: tuple[Sensor, ...] = many("load cells: plates, bins and scales")
    stock: tuple[Stock, ...] = many("planogram: which product is stocked on which sensors")
    cameras: tuple[Camera, ...] = many("ceiling cameras")
    issuers: dict[str, Issuer] = named("who may sign entry passes")
    shelves: ShelfSettings = section(ShelfSettings, "step detection on the load cells")
    fusion: FusionSettings = section(FusionSettings, "who took what")
    gate: GateSettings = section(GateSettings, "entry, exit and binding people to passes")
    mqtt: MqttSettings = section(MqttSettings, "the message broker")
    payments: PaymentSettings = section(PaymentSettings, "charging: processor, its secret key file, timeouts, retries")
    vault: VaultSettings = section(VaultSettings, "encrypted storage, retention and the audit log")
    vision: VisionSettings = section(VisionSettings, "person detection and floor tracking")
