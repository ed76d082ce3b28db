//! The chat template stored in a GGUF file (`tokenizer.chat_template`), rendered with minijinja.
//!
//! Templates are written for Python's Jinja2, so the Python string methods they use (`.strip()`, `.startswith()`)
//! come from minijinja-contrib's pycompat layer, and `raise_exception` is provided as templates expect.

use minijinja::{context, Environment, Error, ErrorKind};

use super::{BackendError, ChatMessage};

pub struct ChatTemplate {
    env: Environment<'static>,
    bos_token: String,
    eos_token: String,
}

impl ChatTemplate {
    pub fn new(source: &str, bos_token: &str, eos_token: &str) -> Result<ChatTemplate, BackendError> {
        let mut env = Environment::new();
        env.set_unknown_method_callback(minijinja_contrib::pycompat::unknown_method_callback);
        env.add_function("raise_exception", |msg: String| -> Result<String, Error> {
            Err(Error::new(ErrorKind::InvalidOperation, msg))
        });
        env.add_template_owned("chat", source.to_owned()).map_err(|e| BackendError::Template(e.to_string()))?;
        Ok(ChatTemplate { env, bos_token: bos_token.to_owned(), eos_token: eos_token.to_owned() })
    }

    /// The prompt for `messages`, ending with the assistant's turn opened.
    pub fn render(&self, messages: &[ChatMessage]) -> Result<String, BackendError> {
        let template = self.env.get_template("chat").map_err(|e| BackendError::Template(e.to_string()))?;
        let messages: Vec<_> =
            messages.iter().map(|m| context! { role => m.role.as_str(), content => m.content.clone() }).collect();
        template
            .render(context! {
                messages => messages,
                add_generation_prompt => true,
                bos_token => self.bos_token.clone(),
                eos_token => self.eos_token.clone(),
            })
            .map_err(|e| BackendError::Template(e.to_string()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::llm::Role;

    const CHATML: &str = "{% for message in messages %}{% if loop.first and messages[0]['role'] != 'system' %}{{ '<|im_start|>system\nYou are a helpful AI assistant named SmolLM, trained by Hugging Face<|im_end|>\n' }}{% endif %}{{'<|im_start|>' + message['role'] + '\n' + message['content'] + '<|im_end|>' + '\n'}}{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}";

    #[test]
    fn renders_chatml_with_generation_prompt() {
        let t = ChatTemplate::new(CHATML, "<|im_start|>", "<|im_end|>").unwrap();
        let out = t
            .render(&[ChatMessage::new(Role::System, "Be brief."), ChatMessage::new(Role::User, "Hi")])
            .unwrap();
        assert_eq!(out, "<|im_start|>system\nBe brief.<|im_end|>\n<|im_start|>user\nHi<|im_end|>\n<|im_start|>assistant\n");
    }

    #[test]
    fn python_methods_and_raise_exception_work() {
        let t = ChatTemplate::new(
            "{% if messages[0]['content'].strip().startswith('x') %}{{ raise_exception('no x') }}{% endif %}ok",
            "",
            "",
        )
        .unwrap();
        assert_eq!(t.render(&[ChatMessage::new(Role::User, " y")]).unwrap(), "ok");
        let err = t.render(&[ChatMessage::new(Role::User, " x")]).unwrap_err();
        assert!(err.to_string().contains("no x"), "{err}");
    }
}
