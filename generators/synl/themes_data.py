"""The built-in SynL themes and the value pools their names and notes are drawn from, as data.

Twenty-odd themes (employees, orders, flights, ...) whose foreign keys (`refs`) form the chains the
multi-hop questions follow. Kept apart from the code that samples and renders rows so that a new
theme or pool word is a change here alone; the pools are read by `rows.py`. `check_themes` runs on
import: a broken theme would otherwise only show up as a strange sample much later.
"""

from __future__ import annotations

from .schema import Column, TableSchema, check_themes

# -- value pools -----------------------------------------------------------------------------------
FIRST = (
    "Ada", "Alan", "Alice", "Amara", "Anna", "Arjun", "Aziz", "Beatriz", "Ben", "Carla", "Chen", "Chloe", "Dara",
    "Diego", "Elena", "Emil", "Esther", "Farah", "Felix", "Grace", "Hana", "Hugo", "Ines", "Ivan", "Jamal", "Jana",
    "Jonas", "Julia", "Kai", "Kenji", "Lars", "Layla", "Leo", "Lina", "Luca", "Maya", "Mei", "Mila", "Nadia",
    "Nina", "Noah", "Olga", "Omar", "Paula", "Pedro", "Priya", "Rafael", "Rosa", "Sami", "Sara", "Sofia", "Tariq",
    "Teresa", "Tom", "Uma", "Victor", "Wei", "Yara", "Yusuf", "Zoe", "José", "Zoë", "Björn", "Chiara", "Dmitri",
    "Ewa", "Fatima", "Gustav", "Ingrid", "Kofi", "Lucía"
)
LAST = (
    "Abbott", "Adeyemi", "Alvarez", "Andersen", "Bauer", "Becker", "Brennan", "Castillo", "Chowdhury", "Costa",
    "Dubois", "Eriksen", "Fischer", "Garcia", "Gupta", "Haddad", "Hansen", "Ito", "Ivanova", "Jensen", "Kaur",
    "Keller", "Kim", "Kowalski", "Larsen", "Lee", "Lopez", "Marino", "Meyer", "Moreau", "Nakamura", "Novak",
    "Okafor", "Olsen", "Park", "Patel", "Petrov", "Quinn", "Rossi", "Sato", "Schmidt", "Silva", "Singh", "Sousa",
    "Tanaka", "Torres", "Varga", "Vogel", "Wagner", "Walsh", "Weber", "Wong", "Yilmaz", "Zhang", "Ziegler",
    "O'Neill", "D'Souza", "Müller", "Nguyen", "Haas", "Lindqvist", "Mensah", "Rahman", "Ortega", "Kovacs",
    "Ferreira"
)
COMPANY_A = (
    "Acme", "Apex", "Atlas", "Aurora", "Beacon", "Blue", "Cedar", "Cobalt", "Crescent", "Delta", "Ember",
    "Evergreen", "Falcon", "Granite", "Harbor", "Horizon", "Iron", "Juniper", "Keystone", "Lumen", "Maple",
    "Meridian", "Nova", "Oak", "Orion", "Pioneer", "Quartz", "Redwood", "Sierra", "Silver", "Summit", "Tidal",
    "Vertex", "Willow", "Zenith", "Northwind", "Bright", "Polar", "Coral"
)
COMPANY_B = (
    "Labs", "Industries", "Logistics", "Foods", "Systems", "Partners", "Works", "Trading", "Group",
    "Supply", "Holdings", "Textiles", "Devices", "& Sons", "& Co", "Analytics", "Motors", "Goods",
)
PRODUCT_ADJ = (
    "Compact", "Deluxe", "Eco", "Ergonomic", "Classic", "Smart", "Portable", "Heavy-duty", "Silent", "Wireless",
    "Rugged", "Slim", "Premium", "Modular", "Foldable", "Vintage", "Turbo", "Ultra", "Basic", "Pro", "Mini",
    "Solar", "Digital", "Thermal", "Magnetic", "Adjustable"
)
PRODUCT_NOUN = (
    "Kettle", "Lamp", "Chair", "Backpack", "Drill", "Speaker", "Blender", "Monitor", "Tent", "Jacket", "Keyboard",
    "Mixer", "Heater", "Scanner", "Router", "Camera", "Bottle", "Stool", "Printer", "Toaster", "Charger", "Fan",
    "Helmet", "Mat", "Shelf", "Cooler", "Scale", "Projector"
)
TITLE_ADJ = (
    "Silent", "Hidden", "Last", "Burning", "Golden", "Broken", "Distant", "Forgotten", "Crimson", "Quiet",
    "Endless", "Wandering", "Silver", "Hollow", "Frozen", "Secret", "Bright", "Lonely", "Ancient", "Restless",
    "Gentle", "Wild", "Final", "Lost"
)
TITLE_NOUN = (
    "River", "Garden", "Empire", "Harbor", "Winter", "Orchard", "Mirror", "Tide", "Kingdom", "Lantern", "Compass",
    "Storm", "Forest", "Letter", "Voyage", "Island", "Memory", "Bridge", "Signal", "Promise", "Shadow", "Mountain",
    "Station", "Archive"
)
PLACES = (
    "Lyon", "Porto", "Osaka", "Austin", "Leeds", "Gdansk", "Bergen", "Tartu", "Cork", "Graz", "Bilbao", "Malmo",
    "Turin", "Utrecht", "Brno", "Nantes", "Kyoto", "Denver", "Perth", "Quebec", "Seville", "Tampere", "Valencia",
    "Zagreb", "Aarhus", "Bologna", "Cusco", "Dakar", "Hobart", "Izmir", "Jaipur", "Kaunas", "Lagos", "Lille",
    "Medan", "Nagoya", "Oslo", "Pune", "Recife", "Sapporo", "Tbilisi", "Varna", "Windhoek", "Yerevan"
)
COUNTRIES = (
    "France", "Portugal", "Japan", "United States", "United Kingdom", "Poland", "Norway", "Estonia",
    "Ireland", "Austria", "Spain", "Sweden", "Italy", "Netherlands", "Czechia", "Canada", "Peru",
    "Senegal", "Australia", "Turkey", "India", "Lithuania", "Nigeria", "Indonesia", "Brazil", "Georgia",
)
NOTE_WORDS = (
    "urgent", "review", "pending", "fragile", "priority", "delayed", "checked", "approved", "returned", "partial",
    "backorder", "verified", "flagged", "repeat", "seasonal", "bulk", "sample", "damaged", "replaced", "audited",
    "renewed", "premium", "local", "export", "draft", "confirmed", "on", "hold", "follow-up", "requested", "manual",
    "automatic", "weekly", "monthly", "quarterly", "corrected", "archived", "missing", "label", "signed", "sealed",
    "refunded", "escalated", "cleared", "discounted", "standard", "express", "overnight"
)


def _cat(name: str, *choices: str) -> Column:
    return Column(name, "category", choices=tuple(choices))


def _int(name: str, low: int, high: int, log: bool = False) -> Column:
    return Column(name, "int", low=low, high=high, log=log)


def _dec(name: str, low: float, high: float, log: bool = False) -> Column:
    return Column(name, "decimal", low=low, high=high, log=log)


def _date(name: str, start: str, end: str) -> Column:
    return Column(name, "date", start=start, end=end)


def _name(name: str, pool: str) -> Column:
    return Column(name, "name", pool=pool)


def _key(name: str, prefix: str) -> Column:
    return Column(name, "key", prefix=prefix)


NOTE = Column("note", "text", pool="note")
_CITY = Column("city", "category", choices=tuple(PLACES))
_COUNTRY = Column("country", "category", choices=COUNTRIES)
_THEMES = (
    TableSchema("employees", "employee", _key("employee_id", "E"), (
        _name("full_name", "person"), _cat("job_title", "Engineer", "Analyst", "Manager", "Designer", "Technician",
                                           "Recruiter", "Accountant", "Consultant", "Architect", "Support Agent"),
        _int("salary", 28_000, 240_000), _dec("bonus", 0, 25_000), _date("hire_date", "1996-01-01", "2024-12-31"),
        _date("birth_date", "1958-01-01", "2003-12-31"), _int("level", 1, 12), _CITY,
        _cat("status", "Active", "On leave", "Contractor", "Probation", "Retired"), _dec("rating", 1, 5),
        _int("extension", 100, 9999), _cat("shift", "Day", "Night", "Rotating", "Remote"),
        _int("vacation_days", 0, 40), _cat("team", "Core", "Platform", "Growth", "R&D", "Ops", "Finance", "Legal"), NOTE,
    ), refs=("departments", "offices")),
    TableSchema("departments", "department", _key("dept_id", "D"), (
        _name("dept_name", "company"), _dec("budget", 50_000, 9_000_000, log=True), _int("headcount", 3, 900),
        _date("founded", "1980-01-01", "2023-12-31"), _int("floor", 1, 45), _name("head", "person"),
        _int("cost_center", 1000, 9999), _cat("region", "North", "South", "East", "West", "Central", "Overseas"),
        _cat("function", "Research", "Sales", "Marketing", "Support", "Production", "Finance", "HR & Admin"),
        _dec("travel_budget", 0, 400_000), _int("open_positions", 0, 60), _date("last_audit", "2015-01-01", "2024-12-31"),
        _cat("risk_level", "Low", "Medium", "High"), NOTE,
    ), refs=("offices",)),
    TableSchema("offices", "office", _key("office_id", "OF"), (
        _name("office_name", "place"), _CITY, _COUNTRY, _date("opened", "1975-01-01", "2024-06-30"),
        _int("desks", 10, 2500), _dec("monthly_rent", 2_000, 900_000, log=True),
        _cat("timezone", "UTC-08:00", "UTC-05:00", "UTC+00:00", "UTC+01:00", "UTC+02:00", "UTC+05:30", "UTC+09:00"),
        _int("meeting_rooms", 1, 120), _cat("ownership", "Leased", "Owned", "Shared"), _int("parking_spaces", 0, 1500),
        _dec("energy_cost", 100, 90_000), _name("site_manager", "person"), _date("renovated", "1990-01-01", "2024-12-31"),
        _cat("security", "Badge", "Badge & PIN", "Guarded", "Open"), NOTE,
    ), refs=("cities",)),
    TableSchema("cities", "city", _key("city_id", "CT"), (
        _name("city_name", "place"), _COUNTRY, _int("population", 5_000, 25_000_000, log=True),
        _dec("area_km2", 5, 8_000, log=True), _int("elevation_m", 0, 3_600), _name("mayor", "person"),
        _cat("climate", "Oceanic", "Continental", "Mediterranean", "Tropical", "Arid", "Subarctic"),
        _int("founded_year", 800, 1990), _dec("avg_rent", 250, 4_500), _int("universities", 0, 60),
        _cat("airport", "None", "Regional", "International", "Hub"), _dec("rainfall_mm", 50, 3_000),
        _date("last_census", "2000-01-01", "2024-12-31"), _int("museums", 0, 200), NOTE,
    )),
    TableSchema("customers", "customer", _key("customer_id", "C"), (
        _name("full_name", "person"), _CITY, _cat("segment", "Retail", "Corporate", "Small Business", "Public Sector"),
        _date("signup_date", "2008-01-01", "2024-12-31"), _int("loyalty_points", 0, 90_000),
        _dec("credit_limit", 500, 250_000, log=True), _cat("newsletter", "Yes", "No"), _int("age", 18, 92),
        _cat("tier", "Bronze", "Silver", "Gold", "Platinum"), _dec("lifetime_value", 0, 500_000, log=True),
        _cat("preferred_channel", "Email", "Phone", "Store", "App"), _int("orders_count", 0, 400),
        _date("last_contact", "2018-01-01", "2024-12-31"), _cat("language", "English", "French", "Spanish", "German",
                                                                   "Japanese", "Portuguese"), NOTE,
    ), refs=("cities",)),
    TableSchema("orders", "order", _key("order_id", "O"), (
        _date("order_date", "2019-01-01", "2024-12-31"),
        _cat("status", "Pending", "Shipped", "Delivered", "Cancelled", "Returned"), _int("quantity", 1, 60),
        _dec("unit_price", 1, 2_500, log=True), _dec("amount", 5, 60_000, log=True), _int("discount_pct", 0, 40),
        _cat("channel", "Web", "Store", "Phone", "Partner"), _cat("priority", "Low", "Medium", "High", "Urgent"),
        _date("ship_date", "2019-01-01", "2025-02-28"), _cat("payment", "Card", "Cash", "Transfer", "Voucher"),
        _dec("shipping_fee", 0, 250), _int("items", 1, 25), _cat("gift_wrap", "Yes", "No"), NOTE,
    ), refs=("customers", "products", "employees")),
    TableSchema("products", "product", _key("product_id", "P"), (
        _name("product_name", "product"), _cat("category", "Kitchen", "Outdoor", "Office", "Audio", "Tools",
                                               "Garden", "Sports", "Lighting", "Home & Living"),
        _dec("price", 2, 4_000, log=True), _int("stock", 0, 5_000), _dec("weight_kg", 0.05, 80, log=True),
        _date("launch_date", "2010-01-01", "2024-12-31"), _dec("rating", 1, 5),
        _cat("color", "Black", "White", "Red", "Blue", "Green", "Grey", "Silver", "Orange"),
        _int("warranty_months", 0, 60), _int("units_sold", 0, 250_000, log=True), _dec("cost", 1, 3_000, log=True),
        _cat("origin", "Domestic", "Imported"), _int("reorder_level", 0, 500), _date("last_restock", "2020-01-01", "2024-12-31"),
        NOTE,
    ), refs=("suppliers",)),
    TableSchema("suppliers", "supplier", _key("supplier_id", "S"), (
        _name("company_name", "company"), _COUNTRY, _date("partner_since", "1990-01-01", "2024-12-31"),
        _dec("rating", 1, 5), _int("lead_time_days", 1, 120), _name("contact", "person"),
        _cat("terms", "Net 15", "Net 30", "Net 60", "Prepaid", "On delivery"), _dec("annual_spend", 1_000, 5_000_000, log=True),
        _int("open_orders", 0, 300), _cat("certified", "Yes", "No"), _int("employees", 2, 40_000, log=True),
        _date("last_audit", "2012-01-01", "2024-12-31"), _cat("risk", "Low", "Medium", "High"), NOTE,
    ), refs=("cities",)),
    TableSchema("flights", "flight", _key("flight_no", "FL"), (
        _cat("origin", "AMS", "ATL", "BOM", "CDG", "DXB", "FRA", "GRU", "HND", "JFK", "LHR", "MAD", "SIN", "SYD", "YYZ"),
        _cat("destination", "ARN", "BCN", "BKK", "CPT", "DEL", "DUB", "HKG", "IST", "LAX", "LIS", "MEX", "ORD", "VIE", "ZRH"),
        _date("departure_date", "2023-01-01", "2024-12-31"), _int("duration_min", 45, 1_100), _int("seats", 50, 520),
        _dec("fare", 39, 4_800, log=True), _cat("status", "On time", "Delayed", "Cancelled", "Boarding", "Landed"),
        _name("captain", "person"), _int("distance_km", 150, 15_500), _int("passengers", 0, 520),
        _dec("fuel_tonnes", 1, 160), _cat("cabin", "Economy", "Premium", "Business", "Mixed"),
        _int("delay_min", 0, 600), _cat("meal", "None", "Snack", "Hot meal", "Vegetarian & Vegan"), NOTE,
    ), refs=("aircraft",)),
    TableSchema("aircraft", "aircraft", _key("tail_no", "AC"), (
        _cat("model", "A220", "A320neo", "A321", "A330", "A350", "B737-800", "B737 MAX", "B777", "B787", "E190"),
        _int("seats", 90, 480), _date("first_flight", "1995-01-01", "2024-06-30"), _int("range_km", 2_000, 16_000),
        _int("hours_flown", 100, 120_000, log=True), _date("last_check", "2021-01-01", "2024-12-31"),
        _cat("base", "AMS", "ATL", "CDG", "DXB", "FRA", "HND", "JFK", "LHR", "SIN"), _dec("value_musd", 8, 380),
        _cat("engine", "CFM56", "LEAP-1A", "LEAP-1B", "GEnx", "Trent XWB", "PW1000G"), _int("cycles", 50, 60_000),
        _cat("owner", "Owned", "Leased", "Wet-leased"), _dec("fuel_burn_kg_h", 1_500, 8_500), NOTE,
    ), refs=("airlines",)),
    TableSchema("airlines", "airline", _key("airline_id", "AL"), (
        _name("airline_name", "company"), _COUNTRY, _date("founded", "1920-01-01", "2020-12-31"),
        _int("fleet_size", 3, 900), _cat("alliance", "None", "Star", "Oneworld", "SkyTeam"),
        _dec("revenue_musd", 20, 60_000, log=True), _int("destinations", 5, 350), _name("ceo", "person"),
        _cat("model", "Full service", "Low cost", "Regional", "Charter"), _dec("on_time_pct", 40, 99),
        _int("employees", 150, 120_000, log=True), _date("last_safety_audit", "2015-01-01", "2024-12-31"), NOTE,
    ), refs=("cities",)),
    TableSchema("shipments", "shipment", _key("shipment_id", "SH"), (
        _date("ship_date", "2020-01-01", "2024-12-31"), _cat("carrier", "Rapid", "Northline", "Globex", "Parcelo", "Swiftway"),
        _dec("weight_kg", 0.2, 900, log=True), _dec("cost", 3, 2_400, log=True),
        _cat("status", "Created", "In transit", "Delivered", "Lost", "Returned"), _date("delivery_date", "2020-01-02", "2025-01-31"),
        _int("packages", 1, 40), _cat("insured", "Yes", "No"), _int("distance_km", 2, 9_000),
        _cat("service", "Economy", "Standard", "Express", "Same day"), _dec("declared_value", 0, 50_000, log=True),
        _int("attempts", 1, 5), NOTE,
    ), refs=("orders", "warehouses")),
    TableSchema("warehouses", "warehouse", _key("warehouse_id", "W"), (
        _name("warehouse_name", "place"), _int("capacity_pallets", 200, 90_000, log=True),
        _date("opened", "1985-01-01", "2024-06-30"), _name("manager", "person"), _int("area_m2", 800, 250_000, log=True),
        _cat("climate_control", "None", "Chilled", "Frozen", "Humidity"), _dec("monthly_cost", 4_000, 1_500_000, log=True),
        _int("docks", 2, 120), _int("staff", 4, 1_500), _cat("automation", "Manual", "Partial", "Full"),
        _date("last_inspection", "2018-01-01", "2024-12-31"), _dec("utilisation_pct", 5, 100), NOTE,
    ), refs=("cities",)),
    TableSchema("patients", "patient", _key("patient_id", "PT"), (
        _name("full_name", "person"), _date("birth_date", "1930-01-01", "2023-12-31"),
        _cat("blood_type", "A+", "A-", "B+", "B-", "AB+", "AB-", "O+", "O-"), _date("admitted", "2022-01-01", "2024-12-31"),
        _cat("ward", "Cardiology", "Oncology", "Pediatrics", "Neurology", "Orthopedics", "ICU", "Maternity"),
        _dec("weight_kg", 3, 160), _int("height_cm", 48, 205), _dec("bill", 50, 250_000, log=True),
        _int("stay_days", 0, 90), _cat("insurance", "Public", "Private", "None"), _int("heart_rate", 45, 140),
        _dec("temperature_c", 35, 41), _cat("outcome", "Recovered", "Transferred", "Ongoing", "Discharged"), NOTE,
    ), refs=("doctors",)),
    TableSchema("doctors", "doctor", _key("doctor_id", "DR"), (
        _name("full_name", "person"), _cat("specialty", "Cardiology", "Oncology", "Pediatrics", "Neurology", "Surgery",
                                           "Radiology", "General practice", "Ear, nose & throat"),
        _int("years_experience", 0, 45), _date("hired", "1990-01-01", "2024-12-31"), _int("salary", 60_000, 480_000),
        _cat("shift", "Day", "Night", "Rotating", "On call"), _dec("rating", 1, 5), _int("patients_per_week", 5, 160),
        _cat("board_certified", "Yes", "No"), _int("publications", 0, 300), _date("license_renewal", "2024-01-01", "2028-12-31"),
        _name("clinic", "place"), NOTE,
    ), refs=("cities",)),
    TableSchema("books", "book", _key("book_id", "BK"), (
        _name("title", "title"), _cat("genre", "Mystery", "Fantasy", "History", "Romance", "Science", "Poetry",
                                      "Biography", "Thriller", "Travel"),
        _int("pages", 48, 1_400), _date("published", "1950-01-01", "2024-12-31"), _dec("price", 3, 90),
        _dec("rating", 1, 5), _cat("language", "English", "French", "Spanish", "German", "Japanese", "Italian"),
        _int("copies_sold", 100, 9_000_000, log=True), _cat("format", "Hardcover", "Paperback", "E-book", "Audiobook"),
        _int("edition", 1, 12), _int("awards", 0, 9), _date("rights_expire", "2025-01-01", "2060-12-31"), NOTE,
    ), refs=("authors", "publishers")),
    TableSchema("authors", "author", _key("author_id", "AU"), (
        _name("full_name", "person"), _date("birth_date", "1920-01-01", "2002-12-31"), _COUNTRY,
        _int("books_written", 1, 90), _int("awards", 0, 25), _cat("main_genre", "Mystery", "Fantasy", "History",
                                                                  "Romance", "Science", "Poetry", "Thriller"),
        _dec("advance_kusd", 0, 2_500, log=True), _name("agent", "person"), _int("followers", 0, 3_000_000, log=True),
        _date("debut", "1945-01-01", "2024-12-31"), _cat("active", "Yes", "No"), NOTE,
    ), refs=("cities",)),
    TableSchema("publishers", "publisher", _key("publisher_id", "PB"), (
        _name("publisher_name", "company"), _date("founded", "1850-01-01", "2020-12-31"), _COUNTRY,
        _int("imprints", 1, 60), _dec("revenue_musd", 0.5, 9_000, log=True), _int("employees", 3, 15_000, log=True),
        _int("titles_per_year", 5, 4_000, log=True), _cat("ownership", "Independent", "Group", "University", "State"),
        _name("ceo", "person"), _cat("digital_first", "Yes", "No"), _date("last_merger", "1990-01-01", "2024-12-31"), NOTE,
    ), refs=("cities",)),
)
THEMES: dict[str, TableSchema] = {t.name: t for t in _THEMES}
check_themes(THEMES)
