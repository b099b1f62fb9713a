//! The simulator's configuration database: per menu, rows in table order,
//! every value a string as RouterOS returns it.

use std::collections::BTreeMap;

/// One row of a menu, as `GET /rest/<menu>` would return it.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Row {
    /// `.id`, `*<HEX>`.
    pub id: String,
    /// Every property as returned: strings only; booleans `"true"`/`"false"`;
    /// flags (`fib`) as `""` when set and absent otherwise; `comment`
    /// absent when empty; state such as `dynamic`, `public-key`, `running`.
    pub props: BTreeMap<String, String>,
}

impl Row {
    /// A property's value.
    pub fn get(&self, key: &str) -> Option<&str> {
        self.props.get(key).map(String::as_str)
    }
    /// Whether a boolean property is `"true"`.
    pub fn is(&self, key: &str) -> bool {
        self.get(key) == Some("true")
    }
    /// Whether the row takes part in the configuration (not `disabled`).
    pub fn enabled(&self) -> bool {
        !self.is("disabled")
    }
}

/// The whole configuration: menu path (`ip/firewall/filter`, no leading
/// slash) -> rows in the router's order.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Db {
    /// Menu -> rows.
    pub menus: BTreeMap<String, Vec<Row>>,
}

impl Db {
    /// A menu's rows in order (empty when the menu has none).
    pub fn rows(&self, menu: &str) -> &[Row] {
        self.menus.get(menu).map_or(&[], Vec::as_slice)
    }
}

impl Row {
    /// A row with this id and properties.
    pub fn new(id: impl Into<String>, props: BTreeMap<String, String>) -> Self {
        Row { id: id.into(), props }
    }
    /// Whether RouterOS made the row itself (`dynamic=true`).
    pub fn dynamic(&self) -> bool {
        self.is("dynamic")
    }
    /// The row as REST returns it: `.id` first, then every property.
    pub fn to_json(&self) -> serde_json::Value {
        let mut m = serde_json::Map::new();
        m.insert(".id".into(), serde_json::Value::String(self.id.clone()));
        for (k, v) in &self.props {
            m.insert(k.clone(), serde_json::Value::String(v.clone()));
        }
        serde_json::Value::Object(m)
    }
}

impl Db {
    /// A menu's rows, mutable (created empty when absent).
    pub fn rows_mut(&mut self, menu: &str) -> &mut Vec<Row> {
        self.menus.entry(menu.to_string()).or_default()
    }
    /// The position of the row with this `.id`.
    pub fn index_of(&self, menu: &str, id: &str) -> Option<usize> {
        self.rows(menu).iter().position(|r| r.id == id)
    }
    /// The row with this `.id`.
    pub fn get(&self, menu: &str, id: &str) -> Option<&Row> {
        self.rows(menu).iter().find(|r| r.id == id)
    }
    /// The first row whose `name` is `name`.
    pub fn by_name(&self, menu: &str, name: &str) -> Option<&Row> {
        self.rows(menu).iter().find(|r| r.get("name") == Some(name))
    }
    /// Every `name` in a menu.
    pub fn names(&self, menu: &str) -> Vec<&str> {
        self.rows(menu).iter().filter_map(|r| r.get("name")).collect()
    }
    /// The whole database as the control socket's `dump` shows it.
    pub fn to_json(&self) -> serde_json::Value {
        let mut m = serde_json::Map::new();
        for (menu, rows) in &self.menus {
            m.insert(menu.clone(), rows.iter().map(Row::to_json).collect());
        }
        serde_json::Value::Object(m)
    }
}
