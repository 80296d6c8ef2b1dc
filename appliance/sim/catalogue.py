"""What the simulated corner shop sells: names, KRW prices, unit weights and package sizes.

Weights are what a kitchen scale says about the packed product (contents plus packaging), the
figure a shelf load cell sees. They are chosen to collide the way real ones do: flavour variants
within a few grams of each other (often on neighbouring plates), a 1 L bottle against two 0.5 L
bottles, multi-packs against their singles, featherweight items (gum, laver) next to kilogram bags,
and a few loose goods sold by weight from bins on scales.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class Item:
    """One product of the catalogue, with the package size the planogram needs to place it.

    `unit_g` is the mean weight of one unit and `unit_sd_g` the spread between units (both
    declared in store.toml); loose goods (`by_weight`) have neither and `price` is per kg.
    """

    key: str
    sku: str
    name: str
    price: int
    unit_g: float | None
    unit_sd_g: float | None
    width_m: float
    depth_m: float
    by_weight: bool = False

    def __post_init__(self) -> None:
        if self.price < 0:
            raise ValueError(f"{self.key}: price must be >= 0, got {self.price}")
        if not self.by_weight and (self.unit_g is None or self.unit_g <= 0):
            raise ValueError(f"{self.key}: unit_g must be > 0 unless sold by weight, got {self.unit_g}")
        if not (0.005 <= self.width_m <= 0.5 and 0.005 <= self.depth_m <= 0.5):
            raise ValueError(f"{self.key}: package size out of range: {self.width_m} x {self.depth_m} m")


def ean13(first12: str) -> str:
    """Complete a 12-digit code with its EAN-13 check digit."""
    if len(first12) != 12 or not first12.isdigit():
        raise ValueError(f"expected 12 digits, got {first12!r}")
    total = sum(int(d) * (3 if i % 2 else 1) for i, d in enumerate(first12))
    return first12 + str((10 - total % 10) % 10)


# key, name, price (KRW), unit_g, unit_sd_g, width cm, depth cm. Grouped by maker code (the EAN's
# 4 digits after 880), which is also roughly how the planogram groups them.
_PACKAGED: dict[str, tuple[tuple[str, str, int, float, float, float, float], ...]] = {
    "1001": (  # drinks
        ("water500", "Jeju Spring Water 500 ml", 1000, 521.0, 2.0, 6.5, 6.5),
        ("water1l", "Jeju Spring Water 1 L", 1600, 1043.0, 3.0, 8.0, 8.0),
        ("water2l", "Jeju Spring Water 2 L", 2100, 2076.0, 5.0, 10.5, 10.5),
        ("cola500", "Cola 500 ml", 2200, 545.0, 2.5, 6.8, 6.8),
        ("colazero500", "Cola Zero 500 ml", 2200, 538.0, 2.5, 6.8, 6.8),
        ("cider500", "Lemon-Lime Cider 500 ml", 2000, 541.0, 2.5, 6.8, 6.8),
        ("cola1500", "Cola 1.5 L", 3800, 1598.0, 5.0, 9.5, 9.5),
        ("ojuice1l", "Orange Juice 1 L", 3500, 1071.0, 4.0, 9.5, 7.0),
        ("sports620", "Ion Sports Drink 620 ml", 2300, 655.0, 2.5, 7.0, 7.0),
        ("sports340", "Ion Sports Drink 340 ml", 1500, 362.0, 2.0, 6.0, 6.0),
        ("greentea500", "Green Tea 500 ml", 1800, 528.0, 2.5, 6.5, 6.5),
        ("coldbrew500", "Cold Brew Coffee 500 ml", 2900, 532.0, 2.5, 6.5, 6.5),
        ("lager500", "Lager Can 500 ml", 3000, 533.0, 2.0, 6.6, 6.6),
        ("bananamilk", "Banana Milk 240 ml", 1700, 262.0, 1.5, 7.0, 7.0),
        ("strawmilk", "Strawberry Milk 240 ml", 1700, 263.0, 1.5, 7.0, 7.0),
        ("melonmilk", "Melon Milk 240 ml", 1700, 261.0, 1.5, 7.0, 7.0),
        ("coffeecan", "Canned Coffee 175 ml", 1200, 203.0, 1.2, 5.3, 5.3),
        ("coffeemild", "Canned Coffee Mild 175 ml", 1200, 204.0, 1.2, 5.3, 5.3),
        ("energy250", "Energy Drink 250 ml", 2000, 275.0, 1.5, 5.3, 5.3),
        ("vitamin100", "Vitamin Drink 100 ml", 1200, 178.0, 1.5, 4.5, 4.5),
        ("aloe500", "Aloe Drink 500 ml", 2000, 545.0, 2.5, 6.8, 6.8),
        ("cornsilk500", "Corn Silk Tea 500 ml", 1800, 524.0, 2.5, 6.5, 6.5),
        ("sparklemon", "Sparkling Water Lemon 500 ml", 1500, 530.0, 2.5, 6.5, 6.5),
        ("sparkplain", "Sparkling Water Plain 500 ml", 1500, 529.0, 2.5, 6.5, 6.5),
    ),
    "2002": (  # snacks and sweets
        ("chocopie12", "Choco Pie 12-pack", 5200, 482.0, 4.0, 19.0, 9.0),
        ("chocopie2", "Choco Pie 2-pack", 1000, 80.0, 1.2, 9.5, 6.0),
        ("cookiefam", "Butter Cookies Family Pack", 6000, 335.0, 3.0, 15.0, 8.0),
        ("ricecrack", "Rice Crackers Big Bag", 4800, 412.0, 4.0, 16.0, 9.0),
        ("honeybutter", "Honey Butter Chips 60 g", 1800, 71.0, 1.2, 12.0, 5.0),
        ("shrimp", "Shrimp Crackers 90 g", 1600, 98.0, 1.5, 13.0, 5.0),
        ("shrimpspicy", "Shrimp Crackers Spicy 90 g", 1600, 99.0, 1.5, 13.0, 5.0),
        ("cookies100", "Butter Cookies 100 g", 2500, 112.0, 1.5, 9.0, 6.0),
        ("cornsnack", "Corn Snack 75 g", 1500, 83.0, 1.3, 12.0, 5.0),
        ("pchipsorig", "Potato Chips Can Original", 3300, 165.0, 2.0, 7.5, 7.5),
        ("pchipssour", "Potato Chips Can Sour Cream", 3300, 167.0, 2.0, 7.5, 7.5),
        ("pchipscheese", "Potato Chips Can Cheese", 3300, 166.0, 2.0, 7.5, 7.5),
        ("custard6", "Custard Cake 6-pack", 4300, 152.0, 2.0, 14.0, 8.0),
        ("pepero", "Pepero Original 54 g", 1700, 61.0, 0.8, 7.0, 2.5),
        ("peperoalm", "Pepero Almond 32 g", 1700, 38.0, 0.6, 7.0, 2.5),
        ("peperonude", "Pepero Nude 50 g", 1700, 57.0, 0.8, 7.0, 2.5),
        ("chocbar", "Chocolate Bar 34 g", 1200, 36.0, 0.5, 5.0, 2.0),
        ("chocbaralm", "Chocolate Bar Almond 46 g", 1500, 48.0, 0.6, 5.0, 2.0),
        ("jelly", "Fruit Jelly 50 g", 1000, 55.0, 0.8, 8.0, 2.5),
        ("jellysour", "Sour Fruit Jelly 50 g", 1000, 56.0, 0.8, 8.0, 2.5),
        ("gumstick", "Chewing Gum 5 Sticks", 500, 15.0, 0.4, 3.0, 1.0),
        ("gummint", "Chewing Gum Mint 5 Sticks", 500, 16.0, 0.4, 3.0, 1.0),
        ("mints", "Mints Tin", 1500, 38.0, 0.5, 5.5, 1.5),
        ("xylitol", "Xylitol Gum Bottle 86 g", 5000, 104.0, 1.0, 6.0, 6.0),
        ("lollipop", "Lollipop", 300, 12.0, 0.4, 3.0, 3.0),
        ("caramel", "Milk Caramels 50 g", 1200, 54.0, 0.7, 7.0, 3.0),
        ("energybar", "Energy Bar 40 g", 1800, 42.0, 0.6, 4.0, 2.0),
        ("energybarchoc", "Energy Bar Chocolate 40 g", 1800, 43.0, 0.6, 4.0, 2.0),
        ("jerky", "Beef Jerky 30 g", 4500, 34.0, 0.7, 10.0, 2.5),
    ),
    "3003": (  # noodles, rice and ready meals
        ("shin", "Shin Ramyun 120 g", 1100, 127.0, 1.2, 14.0, 4.0),
        ("shin5", "Shin Ramyun 5-pack", 4600, 640.0, 4.0, 15.0, 20.0),
        ("jin5", "Jin Ramen Mild 5-pack", 3900, 632.0, 4.0, 15.0, 20.0),
        ("rice3", "Instant Rice 3-pack", 5000, 698.0, 4.0, 12.0, 14.0),
        ("jinmild", "Jin Ramen Mild 120 g", 1000, 126.0, 1.2, 14.0, 4.0),
        ("jinspicy", "Jin Ramen Spicy 120 g", 1000, 126.5, 1.2, 14.0, 4.0),
        ("jjapa", "Black Bean Noodles 140 g", 1200, 146.0, 1.3, 14.0, 4.0),
        ("buldak", "Fire Noodles 140 g", 1400, 147.0, 1.3, 14.0, 4.0),
        ("cupsmall", "Cup Ramen Small 65 g", 1100, 78.0, 1.0, 9.0, 9.0),
        ("cupbig", "Cup Ramen Big 110 g", 1600, 128.0, 1.3, 11.5, 11.5),
        ("rice1", "Instant Rice 210 g", 1800, 232.0, 1.5, 12.0, 4.5),
        ("spam", "Luncheon Meat 200 g", 4900, 238.0, 1.5, 9.5, 5.5),
        ("tuna", "Tuna Can 100 g", 2200, 121.0, 1.0, 8.5, 8.5),
        ("tunaspicy", "Tuna Can Spicy 100 g", 2200, 122.0, 1.0, 8.5, 8.5),
        ("kimbaptuna", "Triangle Kimbap Tuna Mayo", 1300, 118.0, 2.5, 10.0, 4.0),
        ("kimbapbulgogi", "Triangle Kimbap Bulgogi", 1300, 117.0, 2.5, 10.0, 4.0),
        ("sandwich", "Ham and Egg Sandwich", 2800, 182.0, 4.0, 11.0, 6.0),
        ("fishcake", "Fish Cake Bar", 2000, 76.0, 1.5, 4.0, 3.0),
        ("sausage", "Sausage Stick", 1500, 71.0, 1.2, 4.0, 3.0),
        ("eggs2", "Boiled Eggs 2-pack", 1800, 106.0, 3.0, 8.0, 6.0),
        ("laver", "Seasoned Laver 4 g", 700, 5.0, 0.2, 9.0, 1.5),
        ("laver3", "Seasoned Laver 3-pack", 1900, 15.5, 0.4, 9.0, 4.5),
        ("corn340", "Sweet Corn Can 340 g", 2500, 411.0, 2.5, 8.5, 8.5),
        ("peach410", "Peach Halves Can 410 g", 3200, 482.0, 3.0, 8.5, 8.5),
        ("kimchi300", "Kimchi Pouch 300 g", 3900, 331.0, 5.0, 12.0, 4.0),
        ("ketchup300", "Tomato Ketchup 300 g", 2400, 335.0, 3.0, 6.5, 4.5),
    ),
    "4004": (  # household and heavy goods
        ("rice1kg", "Rice 1 kg", 4500, 1012.0, 6.0, 14.0, 7.0),
        ("sugar1kg", "White Sugar 1 kg", 2600, 1008.0, 5.0, 13.0, 6.0),
        ("flour1kg", "Wheat Flour 1 kg", 2800, 1025.0, 6.0, 13.0, 7.0),
        ("detergent", "Laundry Detergent 1.5 L", 9800, 1650.0, 8.0, 11.0, 11.0),
        ("oil900", "Cooking Oil 900 ml", 5500, 870.0, 4.0, 8.0, 8.0),
        ("soy500", "Soy Sauce 500 ml", 3900, 610.0, 3.0, 7.0, 7.0),
        ("dishsoap", "Dish Soap 500 ml", 3000, 560.0, 3.0, 7.5, 5.0),
        ("toothpaste", "Toothpaste 120 g", 3500, 160.0, 1.5, 5.0, 4.0),
        ("tissues", "Pocket Tissues 10-pack", 2000, 140.0, 2.5, 11.0, 8.0),
        ("wipes", "Wet Wipes 20 Sheets", 1500, 118.0, 2.0, 12.0, 7.0),
        ("batteries", "AA Batteries 4-pack", 4500, 98.0, 1.0, 7.0, 2.0),
        ("toothbrush", "Toothbrush", 2500, 25.0, 0.5, 4.0, 2.0),
        ("shampoo", "Shampoo 200 ml", 5900, 245.0, 2.0, 6.0, 4.5),
        ("bodywash", "Body Wash 200 ml", 5500, 240.0, 2.0, 6.0, 4.5),
        ("handcream", "Hand Cream 50 ml", 4000, 68.0, 1.0, 4.5, 3.0),
        ("lipbalm", "Lip Balm", 3000, 12.0, 0.3, 2.5, 2.5),
        ("razors", "Disposable Razors 3-pack", 4000, 45.0, 0.8, 6.0, 2.5),
        ("swabs", "Cotton Swabs 200", 1500, 60.0, 1.0, 8.0, 6.0),
        ("cups10", "Paper Cups 10-pack", 1500, 55.0, 1.0, 8.0, 8.0),
        ("zipbags", "Zipper Bags 20", 2500, 92.0, 1.5, 10.0, 3.0),
        ("chopsticks", "Wooden Chopsticks 20 Pairs", 1500, 110.0, 2.0, 9.0, 5.0),
        ("lighter", "Lighter", 800, 18.0, 0.5, 2.5, 1.5),
        ("cable", "Phone Charging Cable", 6900, 31.0, 0.5, 4.0, 3.0),
        ("umbrella", "Folding Umbrella", 9900, 320.0, 4.0, 7.0, 7.0),
    ),
}

# key, name, price per kg (KRW), bin width cm, bin depth cm.
_LOOSE: tuple[tuple[str, str, int, float, float], ...] = (
    ("nuts", "Mixed Nuts (loose, per kg)", 29000, 28.0, 30.0),
    ("gummies", "Gummy Bears (loose, per kg)", 16000, 28.0, 30.0),
    ("beans", "Coffee Beans (loose, per kg)", 38000, 28.0, 30.0),
)


def catalogue() -> dict[str, Item]:
    """Every product of the default shop, by key, in a fixed order."""
    items: dict[str, Item] = {}
    for maker, rows in _PACKAGED.items():
        for n, (key, name, price, unit_g, sd, width_cm, depth_cm) in enumerate(rows, start=1):
            sku = ean13(f"880{maker}{n:05d}")
            items[key] = Item(key, sku, name, price, unit_g, sd, width_cm / 100, depth_cm / 100)
    for n, (key, name, price, width_cm, depth_cm) in enumerate(_LOOSE, start=1):
        items[key] = Item(key, f"21000{n:02d}", name, price, None, None, width_cm / 100, depth_cm / 100,
                          by_weight=True)
    return items
