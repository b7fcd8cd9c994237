/** Says why a page has no buttons that change things: the token's role may only look. */
export function ReadOnlyNote({ what }: { what: string }) {
  return (
    <div className="banner banner-info" role="note" data-testid="read-only">
      Read-only: your token's role may view {what} but not change them.
    </div>
  );
}
