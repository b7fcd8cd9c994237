"""A proto file built at test time, annotated with every HttpRule feature the gateway supports.

It shows that routes come from descriptors alone: nothing in ``gateway/`` knows this service,
yet once the file is in the descriptor pool the gateway serves it.

    package gwtest.v1;
    service Library {
      rpc GetBook(GetBookRequest) returns (Book) {
        get: "/v1/{name=shelves/*/books/*}"  additional_bindings { get: "/books/{name=**}" } }
      rpc UpdateBook(UpdateBookRequest) returns (Book) {
        patch: "/v1/{book.name=shelves/*/books/*}" body: "book" }
      rpc ListBooks(ListBooksRequest) returns (ListBooksResponse) {
        get: "/v1/shelves/{shelf}/books"
        additional_bindings { get: "/shelves/{shelf}/books" response_body: "books" } }
      rpc ArchiveBook(ArchiveBookRequest) returns (Book) {
        post: "/v1/shelves/{shelf}/books/{id}:archive" body: "*" }
      rpc Follow(FollowRequest) returns (stream Book) { get: "/v1/shelves/{shelf}:follow" }
      rpc Unannotated(Book) returns (Book);
    }
"""

from __future__ import annotations

from google.api import annotations_pb2, http_pb2
from google.protobuf import descriptor_pb2, descriptor_pool
from google.protobuf.descriptor import FileDescriptor

FILE_NAME = "gwtest/v1/library.proto"

_F = descriptor_pb2.FieldDescriptorProto


def _field(
    msg: descriptor_pb2.DescriptorProto,
    name: str,
    number: int,
    kind: int,
    *,
    repeated: bool = False,
    type_name: str = "",
) -> None:
    f = msg.field.add(name=name, number=number, type=kind)  # type: ignore[arg-type]
    f.label = _F.LABEL_REPEATED if repeated else _F.LABEL_OPTIONAL
    if type_name:
        f.type_name = type_name
    f.json_name = "".join(
        part if i == 0 else part[:1].upper() + part[1:] for i, part in enumerate(name.split("_"))
    )


def _rpc(
    svc: descriptor_pb2.ServiceDescriptorProto,
    name: str,
    request: str,
    response: str,
    rule: http_pb2.HttpRule | None,
    *,
    server_streaming: bool = False,
) -> None:
    m = svc.method.add(
        name=name, input_type=f".gwtest.v1.{request}", output_type=f".gwtest.v1.{response}"
    )
    m.server_streaming = server_streaming
    if rule is not None:
        m.options.Extensions[annotations_pb2.http].CopyFrom(rule)


def build_file() -> descriptor_pb2.FileDescriptorProto:
    fdp = descriptor_pb2.FileDescriptorProto(
        name=FILE_NAME,
        package="gwtest.v1",
        syntax="proto3",
        dependency=[
            "google/api/annotations.proto",
            "google/protobuf/timestamp.proto",
            "google/protobuf/duration.proto",
        ],
    )
    book = fdp.message_type.add(name="Book")
    _field(book, "name", 1, _F.TYPE_STRING)
    _field(book, "title", 2, _F.TYPE_STRING)
    _field(book, "pages", 3, _F.TYPE_INT64)
    _field(book, "genre", 4, _F.TYPE_ENUM, type_name=".gwtest.v1.Genre")
    _field(book, "published_at", 5, _F.TYPE_MESSAGE, type_name=".google.protobuf.Timestamp")
    _field(book, "tags", 6, _F.TYPE_STRING, repeated=True)
    _field(book, "archived", 7, _F.TYPE_BOOL)

    genre = fdp.enum_type.add(name="Genre")
    for i, n in enumerate(["GENRE_UNSPECIFIED", "NOVEL", "POETRY"]):
        genre.value.add(name=n, number=i)

    get = fdp.message_type.add(name="GetBookRequest")
    _field(get, "name", 1, _F.TYPE_STRING)

    upd = fdp.message_type.add(name="UpdateBookRequest")
    _field(upd, "book", 1, _F.TYPE_MESSAGE, type_name=".gwtest.v1.Book")
    _field(upd, "validate_only", 2, _F.TYPE_BOOL)

    page = fdp.message_type.add(name="Page")
    _field(page, "size", 1, _F.TYPE_INT32)
    _field(page, "token", 2, _F.TYPE_STRING)

    lst = fdp.message_type.add(name="ListBooksRequest")
    _field(lst, "shelf", 1, _F.TYPE_STRING)
    _field(lst, "genres", 2, _F.TYPE_ENUM, repeated=True, type_name=".gwtest.v1.Genre")
    _field(lst, "archived", 3, _F.TYPE_BOOL)
    _field(lst, "page", 4, _F.TYPE_MESSAGE, type_name=".gwtest.v1.Page")
    _field(lst, "since", 5, _F.TYPE_MESSAGE, type_name=".google.protobuf.Timestamp")
    _field(lst, "min_pages", 6, _F.TYPE_INT64)
    _field(lst, "filter_book", 7, _F.TYPE_MESSAGE, type_name=".gwtest.v1.Book")

    resp = fdp.message_type.add(name="ListBooksResponse")
    _field(resp, "books", 1, _F.TYPE_MESSAGE, repeated=True, type_name=".gwtest.v1.Book")
    _field(resp, "next_page_token", 2, _F.TYPE_STRING)

    arch = fdp.message_type.add(name="ArchiveBookRequest")
    _field(arch, "shelf", 1, _F.TYPE_STRING)
    _field(arch, "id", 2, _F.TYPE_STRING)
    _field(arch, "reason", 3, _F.TYPE_STRING)

    follow = fdp.message_type.add(name="FollowRequest")
    _field(follow, "shelf", 1, _F.TYPE_STRING)
    _field(follow, "every", 2, _F.TYPE_MESSAGE, type_name=".google.protobuf.Duration")
    _field(follow, "count", 3, _F.TYPE_INT32)

    svc = fdp.service.add(name="Library")
    rule = http_pb2.HttpRule(get="/v1/{name=shelves/*/books/*}")
    rule.additional_bindings.add(get="/books/{name=**}")
    _rpc(svc, "GetBook", "GetBookRequest", "Book", rule)
    _rpc(
        svc,
        "UpdateBook",
        "UpdateBookRequest",
        "Book",
        http_pb2.HttpRule(patch="/v1/{book.name=shelves/*/books/*}", body="book"),
    )
    rule = http_pb2.HttpRule(get="/v1/shelves/{shelf}/books")
    rule.additional_bindings.add(get="/shelves/{shelf}/books", response_body="books")
    _rpc(svc, "ListBooks", "ListBooksRequest", "ListBooksResponse", rule)
    _rpc(
        svc,
        "ArchiveBook",
        "ArchiveBookRequest",
        "Book",
        http_pb2.HttpRule(post="/v1/shelves/{shelf}/books/{id}:archive", body="*"),
    )
    _rpc(
        svc,
        "Follow",
        "FollowRequest",
        "Book",
        http_pb2.HttpRule(get="/v1/shelves/{shelf}:follow"),
        server_streaming=True,
    )
    _rpc(svc, "Unannotated", "Book", "Book", None)
    return fdp


def library_file() -> FileDescriptor:
    """The test file, added to the default descriptor pool once."""
    pool = descriptor_pool.Default()
    try:
        return pool.FindFileByName(FILE_NAME)
    except KeyError:
        pass
    # The dependencies must be in the pool first; importing their modules puts them there.
    from google.protobuf import duration_pb2, timestamp_pb2

    _ = (duration_pb2, timestamp_pb2, annotations_pb2)
    pool.Add(build_file())
    return pool.FindFileByName(FILE_NAME)
