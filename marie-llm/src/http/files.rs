//! Files attached to user messages, sorted into what a model API takes.
//!
//! Every dialect makes the same choice per file: an image with its bytes goes as an image, a
//! PDF with its bytes goes as a document where the API takes documents, and everything else
//! (a text file, a PDF for an API without documents, a file that is gone) goes as text, the
//! [`Attachment::as_text`] of it. That choice is made here, once; the JSON each API wants
//! for the parts is written by the dialect itself (`openai.rs`, `openai/responses.rs`,
//! `anthropic/body.rs`, `ollama.rs`).

use marie_core::Attachment;

/// One attached file, as a model is to get it.
#[derive(Debug, PartialEq)]
pub(crate) enum FilePart<'a> {
    /// An image, its bytes inline.
    Image(Inline<'a>),
    /// A PDF document, its bytes inline (only for an API that takes documents).
    Pdf(Inline<'a>),
    /// Text in the file's place: a text file's content fenced and named, or a note that
    /// names a file the model cannot read or that is gone, so that the model knows of it
    /// rather than answering as if the user had attached nothing.
    Text(String),
}

/// A file's bytes, base64-encoded, and what the APIs want to know of it.
#[derive(Debug, PartialEq)]
// Ollama takes the bytes alone; the name and type are read by the other dialects.
#[cfg_attr(not(any(feature = "openai", feature = "anthropic")), allow(dead_code))]
pub(crate) struct Inline<'a> {
    /// The file's name, as the user gave it.
    pub(crate) name: &'a str,
    /// Its content type (`image/png`, `application/pdf`): the media type the APIs ask for.
    pub(crate) media_type: &'a str,
    /// The bytes in standard base64.
    pub(crate) base64: String,
}

#[cfg_attr(not(feature = "openai"), allow(dead_code))]
impl Inline<'_> {
    /// A `data:` URL of the bytes, as OpenAI's APIs take inline files.
    pub(crate) fn data_url(&self) -> String {
        format!("data:{};base64,{}", self.media_type, self.base64)
    }
}

/// The parts of `attachments`, in their order. `takes_pdf`: whether the API takes PDF
/// documents (OpenAI's and Anthropic's do; Ollama's takes images only, so a PDF becomes the
/// note that the model cannot read it).
pub(crate) fn file_parts(attachments: &[Attachment], takes_pdf: bool) -> Vec<FilePart<'_>> {
    attachments
        .iter()
        .map(|attachment| {
            let inline = |base64| Inline {
                name: &attachment.name,
                media_type: &attachment.content_type,
                base64,
            };
            match attachment.base64() {
                Some(base64) if attachment.is_image() => FilePart::Image(inline(base64)),
                Some(base64) if takes_pdf && attachment.is_pdf() => FilePart::Pdf(inline(base64)),
                // Text files, and files the API cannot take or that are gone (`data: None`).
                _ => FilePart::Text(attachment.as_text()),
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use marie_core::{Bytes, FileId};

    use super::*;

    fn file(name: &str, content_type: &str, data: Option<&'static [u8]>) -> Attachment {
        Attachment {
            file_id: FileId::random(),
            name: name.into(),
            content_type: content_type.into(),
            size: data.map_or(3, |d| d.len() as u64),
            data: data.map(Bytes::from_static),
        }
    }

    #[test]
    fn images_and_pdfs_inline_the_rest_as_text() {
        let files = [
            file("cat.png", "image/png", Some(b"png")),
            file("report.pdf", "application/pdf", Some(b"pdf")),
            file("notes.txt", "text/plain", Some(b"hi")),
            file("old.png", "image/png", None),
        ];
        let image = || {
            FilePart::Image(Inline {
                name: "cat.png",
                media_type: "image/png",
                base64: "cG5n".into(),
            })
        };
        let notes = || FilePart::Text("<file name=\"notes.txt\">\nhi\n</file>".into());
        let gone = || {
            FilePart::Text("[attached file \"old.png\" (image/png): no longer available]".into())
        };
        assert_eq!(
            file_parts(&files, true),
            [
                image(),
                FilePart::Pdf(Inline {
                    name: "report.pdf",
                    media_type: "application/pdf",
                    base64: "cGRm".into(),
                }),
                notes(),
                gone(),
            ]
        );
        // Without documents, a PDF is named, not sent.
        assert_eq!(
            file_parts(&files, false),
            [
                image(),
                FilePart::Text(
                    "[attached file \"report.pdf\" (application/pdf, 3 bytes): this model cannot read it]"
                        .into()
                ),
                notes(),
                gone(),
            ]
        );
        let FilePart::Image(inline) = image() else {
            unreachable!()
        };
        assert_eq!(inline.data_url(), "data:image/png;base64,cG5n");
    }
}
