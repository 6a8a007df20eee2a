//! What a room is made of, as persisted and as the HTTP edge reads it: its snapshot,
//! participants, settings, messages and counts, and the room's errors.

use super::*;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum RoomKind {
    Direct,
    Group,
    /// A contract T room about a ticket listing: one buyer and the seller.
    Trade,
}

impl RoomKind {
    /// As contract C names it (a trade room is a direct room there).
    pub fn as_str(self) -> &'static str {
        match self {
            RoomKind::Direct | RoomKind::Trade => "direct",
            RoomKind::Group => "group",
        }
    }
}

/// What a trade room is about.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct TradeInfo {
    pub listing: u64,
    pub buyer: u64,
    pub seller: u64,
}

impl TradeInfo {
    /// The other party of `user` (the receiver of what `user` sends).
    pub fn other(&self, user: u64) -> u64 {
        if user == self.buyer {
            self.seller
        } else {
            self.buyer
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Participant {
    /// The participant's number in the room (1, 2, ...).
    pub id: u32,
    pub user: u64,
    /// As their latest token said; `None` while the server has never seen a token of
    /// theirs (the HTTP edge names them then).
    pub name: Option<String>,
    pub picture: Option<String>,
    pub joined_at: u64,
    /// The newest message id this participant has read.
    pub last_read: u64,
    pub last_read_at: Option<u64>,
    pub active: bool,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RoomSettings {
    pub notification_enabled: bool,
    pub message_retention_days: u32,
    pub auto_delete_enabled: bool,
    pub read_receipt_enabled: bool,
}

impl Default for RoomSettings {
    fn default() -> Self {
        RoomSettings {
            notification_enabled: true,
            message_retention_days: 365,
            auto_delete_enabled: false,
            read_receipt_enabled: true,
        }
    }
}

/// A change to some settings.
#[derive(Debug, Clone, Default)]
pub struct SettingsPatch {
    pub notification_enabled: Option<bool>,
    pub message_retention_days: Option<u32>,
    pub auto_delete_enabled: Option<bool>,
    pub read_receipt_enabled: Option<bool>,
}

/// Everything about a room but its messages (persisted as one snapshot).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RoomSnapshot {
    pub id: u64,
    pub name: Option<String>,
    pub kind: RoomKind,
    pub description: Option<String>,
    pub max_participants: u32,
    pub created_by: u64,
    pub active: bool,
    pub created_at: u64,
    pub updated_at: u64,
    pub participants: Vec<Participant>,
    pub settings: RoomSettings,
    /// Set for a trade room.
    pub trade: Option<TradeInfo>,
    /// When a party left a trade room: it is closed, and left out of room lists.
    pub closed_at: Option<u64>,
}

impl RoomSnapshot {
    pub fn participant(&self, user: u64) -> Option<&Participant> {
        self.participants.iter().find(|p| p.user == user && p.active)
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StoredFile {
    /// The name under the room's file directory.
    pub stored: String,
    /// The name it was uploaded with.
    pub name: String,
    pub size: u64,
    pub content_type: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StoredMessage {
    pub id: u64,
    pub room: u64,
    pub sender: u64,
    pub sender_name: String,
    pub sender_picture: Option<String>,
    pub content: Option<String>,
    pub kind: String,
    pub file: Option<StoredFile>,
    /// Contract T's images (up to 3).
    pub images: Vec<StoredFile>,
    pub reply_to: Option<u64>,
    pub created_at: u64,
    pub edited_at: Option<u64>,
    pub deleted: bool,
    pub updated_at: u64,
}

impl StoredMessage {
    pub fn file_url(room: u64, stored: &str) -> String {
        format!("/chat/files/{room}/{stored}")
    }

    /// The unsigned path of an image; it is served only through a signed link.
    pub fn image_path(room: u64, stored: &str) -> String {
        format!("/api/chat/images/{room}/{stored}")
    }

    pub fn event(&self) -> MessageEvent {
        MessageEvent {
            room: self.room,
            id: self.id,
            sender: self.sender,
            sender_name: self.sender_name.clone(),
            sender_picture: self.sender_picture.clone(),
            content: self.content.clone(),
            kind: self.kind.clone(),
            file: self.file.as_ref().map(|f| FileRef {
                url: Self::file_url(self.room, &f.stored),
                name: f.name.clone(),
                size: f.size,
            }),
            images: self
                .images
                .iter()
                .map(|f| FileRef { url: Self::image_path(self.room, &f.stored), name: f.name.clone(), size: f.size })
                .collect(),
            reply_to: self.reply_to,
            created_at: self.created_at,
            edited_at: self.edited_at,
            updated_at: self.updated_at,
            deleted: self.deleted,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error, Serialize, Deserialize)]
pub enum ChatError {
    #[error("room not found")]
    RoomNotFound,
    #[error("you are not a participant of this room")]
    NotParticipant,
    #[error("message not found")]
    MessageNotFound,
    #[error("only the sender may change this message")]
    NotSender,
    /// The room is closed: nothing more may be posted.
    #[error("the room is closed")]
    RoomClosed,
    /// A reply to a message that is not this room's.
    #[error("reply_to_message_id {0} is not a message of this room")]
    NotInRoom(u64),
    #[error("storage failure: {0}")]
    Storage(String),
    /// An edge could not reach the core (NATS or the core is down): try again.
    #[error("the service is unavailable: {0}")]
    Unavailable(String),
    /// A room the directory's rules do not allow.
    #[error("refused: {0:?}")]
    Refused(RoomRule),
    /// A client message id its sender used in this room for another message (other
    /// content, kind or reply).
    #[error("this client_msg_id was already used for a different message")]
    ClientIdReused,
}

/// The rules a new room must meet; the directory checks them, whoever asks.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum RoomRule {
    /// A direct room is between its creator and exactly one other user.
    DirectNeedsOneOther,
    /// A group room has a name.
    GroupNeedsName,
    /// A group room has at least one participant besides its creator.
    GroupNeedsOthers,
    /// More participants than a room may have (`BOXOFFICE_CHAT_MAX_PARTICIPANTS`).
    TooMany { max: u32 },
    /// A seller does not open a trade room on their own listing.
    OwnListing,
    /// A trade room is opened about a listing ([`OpenTradeRoom`](crate::actors::directory::OpenTradeRoom)).
    TradeNeedsListing,
}

impl From<StoreError> for ChatError {
    fn from(e: StoreError) -> Self {
        ChatError::Storage(e.to_string())
    }
}

/// A room's counts, kept with every change (see [`Key::RoomCounts`]).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct RoomCounts {
    /// Messages written (deleted ones keep their place and count).
    pub messages: u64,
    /// Per participant, the messages of others they have not read (deleted ones not).
    pub unread: BTreeMap<u64, u64>,
}

/// Who is acting, as the token says.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Author {
    pub id: u64,
    pub name: String,
    pub picture: Option<String>,
}
