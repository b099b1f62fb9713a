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
