//! XEP-0004 data forms as XEP-0060 uses them: read a submitted form into
//! `var -> values`, write a form of typed fields.

use std::collections::BTreeMap;

use starling_core::xml::{Element, ns};

/// A submitted form: its FORM_TYPE and the other fields' values.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Submitted {
    pub form_type: Option<String>,
    pub fields: BTreeMap<String, Vec<String>>,
}

impl Submitted {
    /// Reads an `<x xmlns='jabber:x:data'/>`. A cancelled form has no fields.
    pub fn parse(x: &Element) -> Submitted {
        let mut form = Submitted::default();
        if x.attr("type") == Some("cancel") {
            return form;
        }
        for field in x.children().filter(|c| c.is("field", ns::XDATA)) {
            let Some(var) = field.attr("var") else {
                continue;
            };
            let values: Vec<String> = field
                .children()
                .filter(|c| c.is("value", ns::XDATA))
                .map(Element::text)
                .collect();
            if var == "FORM_TYPE" {
                form.form_type = values.into_iter().next();
            } else {
                form.fields.insert(var.to_owned(), values);
            }
        }
        form
    }

    /// The first value of a field.
    pub fn value(&self, var: &str) -> Option<&str> {
        self.fields
            .get(var)
            .and_then(|values| values.first())
            .map(String::as_str)
    }
}

/// XEP-0004 booleans: "1"/"true" and "0"/"false".
pub fn parse_bool(value: &str) -> Option<bool> {
    match value {
        "1" | "true" => Some(true),
        "0" | "false" => Some(false),
        _ => None,
    }
}

/// A form to send: `type='form'` (or `result`) with a hidden FORM_TYPE.
pub struct FormBuilder {
    x: Element,
}

impl FormBuilder {
    pub fn new(kind: &str, form_type: &str) -> FormBuilder {
        let x = Element::new("x", ns::XDATA).with_attr("type", kind);
        let mut builder = FormBuilder { x };
        builder.field("FORM_TYPE", "hidden", None, &[form_type]);
        builder
    }

    pub fn field(&mut self, var: &str, kind: &str, label: Option<&str>, values: &[&str]) {
        let mut field = Element::new("field", ns::XDATA)
            .with_attr("var", var)
            .with_attr("type", kind);
        if let Some(label) = label {
            field.set_attr("label", label);
        }
        for value in values {
            field.push_child(Element::new("value", ns::XDATA).with_text(*value));
        }
        self.x.push_child(field);
    }

    /// A list-single field with its options.
    pub fn list(&mut self, var: &str, label: &str, value: &str, options: &[&str]) {
        let mut field = Element::new("field", ns::XDATA)
            .with_attr("var", var)
            .with_attr("type", "list-single")
            .with_attr("label", label)
            .with_child(Element::new("value", ns::XDATA).with_text(value));
        for option in options {
            field.push_child(
                Element::new("option", ns::XDATA)
                    .with_child(Element::new("value", ns::XDATA).with_text(*option)),
            );
        }
        self.x.push_child(field);
    }

    pub fn boolean(&mut self, var: &str, label: &str, value: bool) {
        self.field(
            var,
            "boolean",
            Some(label),
            &[if value { "1" } else { "0" }],
        );
    }

    pub fn build(self) -> Element {
        self.x
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_fields() {
        let mut builder = FormBuilder::new("submit", "urn:t");
        builder.boolean("a", "A", true);
        builder.field("b", "text-multi", None, &["x", "y"]);
        let form = Submitted::parse(&builder.build());
        assert_eq!(form.form_type.as_deref(), Some("urn:t"));
        assert_eq!(form.value("a"), Some("1"));
        assert_eq!(form.fields["b"], ["x", "y"]);
        assert_eq!(parse_bool("true"), Some(true));
        assert_eq!(parse_bool("yes"), None);
    }

    #[test]
    fn cancelled_form_is_empty() {
        let x = Element::new("x", ns::XDATA).with_attr("type", "cancel");
        assert_eq!(Submitted::parse(&x), Submitted::default());
    }
}
